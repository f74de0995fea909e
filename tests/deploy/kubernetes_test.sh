#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests (deploy/kubernetes):
#  1. `kubectl kustomize` renders each overlay;
#  2. every rendered object, and each overlay's secret.example.yaml, passes
#     tests/deploy/validate_kubernetes.mjs (kubernetes-models schemas, unknown
#     fields against @kubernetes/client-node's models, the image is
#     localhost/hawiya:VERSION of CMakeLists.txt, probes on the health port);
#  3. yamllint --strict on the manifests and the test data; with the path of
#     a built hawiya-server as argument, every --flag the manifests pass is
#     one that binary knows;
#  4. the validator rejects each broken manifest in tests/deploy/testdata, with
#     the one problem its "# expect:" line names.
# Installs what is missing, like deploy/setup.sh: yamllint, nodejs and npm
# (Debian packages) and the npm packages of tests/deploy/package-lock.json
# (npm ci, into tests/deploy/node_modules). kubectl 1.21 or later must be on
# PATH: Debian 12's kubernetes-client (kubectl 1.20, kustomize v2.0.3) cannot
# render the overlays (no folders in resources, no --load-restrictor), so it
# is not installed; the first check fails saying so.
# Ends with "N passed, N failed"; exits non-zero if any check failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/hawiya-kubernetes-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

install_debian() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "kubernetes_test: installing $*" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

missing=()
command -v yamllint > /dev/null || missing+=(yamllint)
command -v node > /dev/null || missing+=(nodejs)
command -v npm > /dev/null || missing+=(npm)
if ((${#missing[@]})); then install_debian "${missing[@]}"; fi

# npm ci empties node_modules first: run it only when the lock file changed.
stamp="$here/node_modules/.hawiya-package-lock.json"
if ! cmp -s "$here/package-lock.json" "$stamp"; then
  npm ci --prefix "$here" --no-audit --no-fund --prefer-offline > "$work/npm.log" 2>&1 \
    || { cat "$work/npm.log" >&2; echo "kubernetes_test: npm ci failed" >&2; exit 1; }
  cp "$here/package-lock.json" "$stamp"
fi

passed=0
failed=0
# check NAME COMMAND...: runs COMMAND, its output shown only if it fails.
check() {
  local name=$1
  shift
  if "$@" > "$work/out" 2>&1; then
    echo "ok: $name"
    passed=$((passed + 1))
  else
    echo "FAILED: $name"
    sed 's/^/  /' "$work/out"
    failed=$((failed + 1))
  fi
}

version=$(sed -n 's/^project(hawiya VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
image="localhost/hawiya:$version"
validate=(node "$here/validate_kubernetes.mjs")

# Overlays read the example config from deploy/, outside their own folder:
# kustomize v4 and later (kubectl 1.21 and later) take --load-restrictor.
kustomize_works() {
  command -v kubectl > /dev/null || { echo "no kubectl on PATH (1.21 or later needed)"; return 1; }
  kubectl kustomize --help 2>&1 | grep -q -- '--load-restrictor' || {
    echo "kubectl $(kubectl version --client 2>&1 | head -1): its kustomize is too old" \
      "(needs --load-restrictor, kustomize v4+, kubectl 1.21+)"
    return 1
  }
}
check "kubectl kustomize is v4 or later" kustomize_works

for overlay in "$root"/deploy/kubernetes/overlays/*/; do
  name=$(basename "$overlay")
  rendered="$work/$name.yaml"
  check "overlay $name renders" \
    kubectl kustomize --load-restrictor=LoadRestrictionsNone "$overlay" -o "$rendered"
  if [ -s "$rendered" ]; then
    check "overlay $name: every object valid, image $image" \
      "${validate[@]}" --image="$image" "$rendered"
  fi
  if [ -f "$overlay/secret.example.yaml" ]; then
    check "overlay $name: secret.example.yaml valid" "${validate[@]}" "$overlay/secret.example.yaml"
  fi
done

# known_flags OVERLAY_YAML: every "- --name=..." argument is a flag of the
# hawiya-server given as this script's argument.
server=${1:-}
known_flags() {
  local known unknown=0
  known=$("$server" --helpfull 2>&1 | sed -n 's/^    --\([a-z_0-9]*\) .*/\1/p')
  [ -n "$known" ] || { echo "$server --helpfull lists no flags"; return 1; }
  for flag in $(sed -n 's/^ *- --\([a-z_0-9]*\)=.*/\1/p' "$1" | sort -u); do
    grep -qx "$flag" <<< "$known" || { echo "--$flag: not a flag of $server"; unknown=1; }
  done
  return "$unknown"
}
for rendered in "$work"/*.yaml; do
  [ -e "$rendered" ] || continue
  if [ -n "$server" ]; then
    check "overlay $(basename "$rendered" .yaml): hawiya-server knows every flag" known_flags "$rendered"
  else
    echo "skip: overlay $(basename "$rendered" .yaml): flags (no hawiya-server given)"
  fi
done

check "yamllint" yamllint --strict -c "$root/deploy/kubernetes/.yamllint.yaml" \
  "$root/deploy/kubernetes" "$here/testdata"

# rejects FILE: the validator fails on FILE with exactly one problem, the
# one FILE's "# expect:" line quotes.
rejects() {
  local file=$1 expect out status=0
  expect=$(sed -n 's/^# expect: //p' "$file")
  [ -n "$expect" ] || { echo "$file: no '# expect:' line"; return 1; }
  out=$("${validate[@]}" "$file" 2> /dev/null) || status=$?
  echo "$out"
  [ "$status" -eq 1 ] || { echo "exit status $status, expected 1"; return 1; }
  [ "$(printf '%s\n' "$out" | grep -c .)" -eq 1 ] || { echo "expected exactly one problem"; return 1; }
  [[ "$out" == *"$expect"* ]] || { echo "expected: $expect"; return 1; }
}
for broken in "$here"/testdata/*.yaml; do
  check "rejects testdata/$(basename "$broken")" rejects "$broken"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
