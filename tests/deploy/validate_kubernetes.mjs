// Checks Kubernetes manifests offline, object by object:
//  - kubernetes-models: each field's type, required fields, enums;
//  - a walk over @kubernetes/client-node's models (attributeTypeMap): any
//    field the API does not define (a misspelling the API server would
//    drop or reject);
//  - metadata.name set;
//  - with --image=IMAGE: every container runs IMAGE;
//  - every gRPC probe targets a port the container declares, and the
//    --health_listen port where the container's args set one.
//
// Usage: node validate_kubernetes.mjs [--image=IMAGE] FILE...
// Each FILE is a YAML stream (one or more documents). Prints one line per
// problem, "FILE: KIND/NAME: PATH: MESSAGE", and exits 1 if there is any,
// 2 if a file cannot be read or parsed, 0 otherwise.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

import yaml from "js-yaml";
import * as clientModels from "@kubernetes/client-node/dist/gen/models/all.js";

const require = createRequire(import.meta.url);

// "apps/v1" -> ["apps", "v1"]; "v1" -> ["", "v1"].
function splitApiVersion(apiVersion) {
  const slash = apiVersion.lastIndexOf("/");
  return slash < 0
    ? ["", apiVersion]
    : [apiVersion.slice(0, slash), apiVersion.slice(slash + 1)];
}

// The kubernetes-models class of a kind, or null.
function modelClass(apiVersion, kind) {
  try {
    return require(`kubernetes-models/${apiVersion}/${kind}`)[kind] ?? null;
  } catch {
    return null;
  }
}

// The client-node model name of a top-level kind: V1StatefulSet, or with
// the group's prefix where names collide (CoreV1Event, EventsV1Event).
function clientModelName(apiVersion, kind) {
  const [group, version] = splitApiVersion(apiVersion);
  const v = version[0].toUpperCase() + version.slice(1);
  const prefix = (group || "core")
    .split(".")[0]
    .replace(/^./, (c) => c.toUpperCase());
  for (const name of [`${v}${kind}`, `${prefix}${v}${kind}`]) {
    if (clientModels[name]?.attributeTypeMap) return name;
  }
  return null;
}

const MAP_TYPE = /^\{ \[key: string\]: (.+); \}$/;
const ARRAY_TYPE = /^Array<(.+)>$/;

// Reports every field of `value` that model type `type` does not define.
function walkUnknownFields(value, type, path, report) {
  if (value === null || value === undefined) return;
  const array = ARRAY_TYPE.exec(type);
  if (array) {
    if (Array.isArray(value)) {
      value.forEach((item, i) => walkUnknownFields(item, array[1], `${path}[${i}]`, report));
    }
    return;
  }
  const map = MAP_TYPE.exec(type);
  if (map) {
    if (typeof value === "object" && !Array.isArray(value)) {
      for (const [key, item] of Object.entries(value)) {
        walkUnknownFields(item, map[1], `${path}.${key}`, report);
      }
    }
    return;
  }
  const model = clientModels[type];
  // Primitives, IntOrString, any: kubernetes-models checks their types.
  if (!model?.attributeTypeMap) return;
  if (typeof value !== "object" || Array.isArray(value)) return;
  const fields = new Map(model.attributeTypeMap.map((a) => [a.baseName, a.type]));
  for (const [key, item] of Object.entries(value)) {
    const fieldPath = path ? `${path}.${key}` : key;
    if (!fields.has(key)) {
      report(fieldPath, `unknown field "${key}" (not in ${type})`);
      continue;
    }
    walkUnknownFields(item, fields.get(key), fieldPath, report);
  }
}

// A JSON pointer (ajv's instancePath) as the walker writes paths:
// "/spec/ports/0" -> "spec.ports[0]".
function pointerToPath(pointer) {
  let path = "";
  for (const raw of pointer.split("/").slice(1)) {
    const segment = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    path += /^\d+$/.test(segment) ? `[${segment}]` : path ? `.${segment}` : segment;
  }
  return path;
}

// kubernetes-models' errors (ajv).
function schemaErrors(object, Model, report) {
  try {
    new Model(object).validate();
  } catch (error) {
    const errors = error.errors ?? [{ instancePath: "", message: error.message }];
    for (const e of errors) {
      const path = pointerToPath(e.instancePath);
      const missing = e.params?.missingProperty;
      report(path, missing ? `missing required field "${missing}"` : e.message);
    }
  }
}

function* podSpecs(object) {
  const spec = object.spec ?? {};
  if (spec.template?.spec) yield ["spec.template.spec", spec.template.spec];
  if (object.kind === "Pod") yield ["spec", spec];
}

// Project rules on pod templates: the image, and gRPC probes on a declared
// port (a probe on a port nothing serves fails only once deployed).
function podChecks(object, options, report) {
  for (const [specPath, spec] of podSpecs(object)) {
    for (const group of ["initContainers", "containers"]) {
      (spec[group] ?? []).forEach((container, i) => {
        const at = `${specPath}.${group}[${i}]`;
        if (options.image && container.image !== options.image) {
          report(`${at}.image`, `is ${container.image}, expected ${options.image}`);
        }
        const ports = new Set((container.ports ?? []).map((p) => p.containerPort));
        // hawiya-server serves the health service only on --health_listen.
        const healthArg = (container.args ?? []).find((a) => String(a).startsWith("--health_listen="));
        const healthPort = healthArg ? Number(healthArg.slice(healthArg.lastIndexOf(":") + 1)) : null;
        for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
          const grpc = container[probe]?.grpc;
          if (!grpc || !Number.isInteger(grpc.port)) continue;
          if (!ports.has(grpc.port)) {
            report(`${at}.${probe}.grpc.port`, `${grpc.port} is not a containerPort of ${container.name}`);
          } else if (healthPort !== null && grpc.port !== healthPort) {
            report(`${at}.${probe}.grpc.port`, `${grpc.port} is not the --health_listen port ${healthPort}`);
          }
        }
      });
    }
  }
}

function validateObject(object, options, report) {
  if (typeof object !== "object" || Array.isArray(object)) {
    report("", "not a Kubernetes object (a mapping with apiVersion and kind)");
    return;
  }
  const { apiVersion, kind } = object;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    report("", "missing apiVersion or kind");
    return;
  }
  const Model = modelClass(apiVersion, kind);
  const clientName = clientModelName(apiVersion, kind);
  if (!Model || !clientName) {
    report("", `no schema for ${apiVersion} ${kind}`);
    return;
  }
  if (!object.metadata?.name) report("metadata.name", "missing");
  schemaErrors(object, Model, report);
  walkUnknownFields(object, clientName, "", report);
  podChecks(object, options, report);
}

function main(argv) {
  const options = { image: null };
  const files = [];
  for (const arg of argv) {
    if (arg.startsWith("--image=")) options.image = arg.slice("--image=".length);
    else if (arg.startsWith("--")) {
      console.error(`validate_kubernetes: unknown flag ${arg}`);
      return 2;
    } else files.push(arg);
  }
  if (files.length === 0) {
    console.error("usage: node validate_kubernetes.mjs [--image=IMAGE] FILE...");
    return 2;
  }
  let problems = 0;
  let objects = 0;
  for (const file of files) {
    let documents;
    try {
      documents = yaml.loadAll(readFileSync(file, "utf8"));
    } catch (error) {
      console.error(`${file}: ${error.message}`);
      return 2;
    }
    for (const object of documents) {
      if (object === null || object === undefined) continue;
      ++objects;
      const name = `${object?.kind ?? "?"}/${object?.metadata?.name ?? "?"}`;
      validateObject(object, options, (path, message) => {
        ++problems;
        console.log(`${file}: ${name}: ${path || "(object)"}: ${message}`);
      });
    }
  }
  if (objects === 0) {
    console.log(`${files.join(" ")}: no objects`);
    return 1;
  }
  console.error(`validate_kubernetes: ${objects} objects, ${problems} problems`);
  return problems === 0 ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
