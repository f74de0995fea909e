#!/usr/bin/env bash
# Runs localhost/hawiya:VERSION (deploy/container/build-image.sh) with
# podman as production would, with mutual TLS: the development PKI and the
# data folder are volumes, the server listens on 127.0.0.1:PORT in the
# host's network namespace. From the host the CLI of BUILD_DIR checks
# health, enrolls a person and reads it back; `podman stop` (SIGTERM) must
# end the server with exit status 0. Every wait has a deadline; the
# container and the temp folder are removed on any exit.
#
# As in deploy/kubernetes/: the root filesystem is read-only (a tmpfs on
# /tmp); the plaintext health port (--health_listen) and the metrics
# endpoint (--metrics_listen) answer too.
#
# Usage: deploy/container/test-image.sh [BUILD_DIR]   (default: build)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=$(realpath "${1:-$repo/build}")
start=$SECONDS
say() { echo "test-image: [$((SECONDS - start))s] $*" >&2; }
fail() { echo "test-image: FAIL: $*" >&2; exit 1; }

# shellcheck source=deploy/container/common.sh
source "$repo/deploy/container/common.sh"
ensure_container_tools
image=$(hawiya_image)
hawiya="$build_dir/services/hawiya"
[ -x "$hawiya" ] || fail "$hawiya is missing (deploy/build.sh hawiya)"
podman image exists "$image" || fail "$image is missing (deploy/container/build-image.sh)"

# The sandbox's runtime settings, outside the image.
export CONTAINERS_CONF="$repo/deploy/container/containers.conf"

tmp=$(mktemp -d /var/tmp/hawiya-image-test.XXXXXX)
name="hawiya-test-$$"
cleanup() {
  status=$?
  if podman container exists "$name" 2>/dev/null; then
    if [ "$status" -ne 0 ]; then
      echo "test-image: server log:" >&2
      podman logs "$name" >&2 2>&1 || true
    fi
    podman rm -f -t 5 "$name" >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
health_port=$(free_port)
metrics_port=$(free_port)

# TLS material as a read-only volume (a Kubernetes Secret in production);
# the server's files readable by the image's user only.
"$hawiya" dev-pki --out="$tmp/pki" >/dev/null
chown "$HAWIYA_UID:$HAWIYA_UID" "$tmp/pki/server.key"
chmod 0755 "$tmp/pki"
install -d -m 0700 -o "$HAWIYA_UID" -g "$HAWIYA_UID" "$tmp/data"

say "starting $image on 127.0.0.1:$port"
podman run --detach --name "$name" --read-only --tmpfs /tmp \
  --volume "$tmp/pki:/etc/hawiya/tls:ro" \
  --volume "$tmp/data:/var/lib/hawiya" \
  "$image" \
  --config=/etc/hawiya/hawiya.textproto --data_dir=/var/lib/hawiya \
  --listen="127.0.0.1:$port" --health_listen="127.0.0.1:$health_port" \
  --metrics_listen="127.0.0.1:$metrics_port" --log_format=json \
  --tls_cert=/etc/hawiya/tls/server.pem --tls_key=/etc/hawiya/tls/server.key \
  --client_ca=/etc/hawiya/tls/ca.pem >/dev/null

# The server prints "serving" once the galleries are loaded.
deadline=$((SECONDS + 60))
# (Logs are read into a variable: grep -q would close the pipe early, and
# under pipefail podman's SIGPIPE would fail the check.)
server_log() { podman logs "$name" 2>&1; }
until grep -q 'hawiya-server: serving' <<<"$(server_log)"; do
  [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] \
    || fail "the container exited before serving"
  ((SECONDS < deadline)) || fail "not serving after 60 s"
  sleep 0.5
done
say "serving"

[ "$(podman exec "$name" id -u)" = "$HAWIYA_UID" ] || fail "the server does not run as uid $HAWIYA_UID"
grep -q '^{"time":' <<<"$(server_log)" || fail "no JSON log line (--log_format=json)"

cli=("$hawiya" --server="127.0.0.1:$port" --pki_dir="$tmp/pki" --timeout=20s)
health=$("${cli[@]}" health) || fail "hawiya health: exit $?"
grep -q '"status": "SERVING"' <<<"$health" || fail "hawiya health: $health"
say "health: SERVING"
probe=$("$hawiya" --insecure --server="127.0.0.1:$health_port" --timeout=20s health) \
  || fail "health port: exit $?"
grep -q '"status": "SERVING"' <<<"$probe" || fail "health port: $probe"
say "plaintext health port: SERVING"

"$hawiya" synth --identity=7 --capture=0 > "$tmp/enroll-face.json"
enrolled=$("${cli[@]}" enroll --person="$repo/deploy/examples/person.json" \
  --templates="$tmp/enroll-face.json") || fail "hawiya enroll: exit $?"
grep -q '"state": "ACTIVE"' <<<"$enrolled" || fail "hawiya enroll: $enrolled"
say "enroll: ACTIVE, $(grep -m1 subjectId <<<"$enrolled" | tr -d ' ,')"
record=$("${cli[@]}" get --national_id=289031501234 --country=KWT) \
  || fail "hawiya get: exit $?"
grep -q 289031501234 <<<"$record" || fail "hawiya get: $record"
say "get: the enrolled person is read back"
# The Enroll above is counted by method and code.
metrics=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())' \
  "http://127.0.0.1:$metrics_port/metrics") || fail "metrics endpoint: exit $?"
grep -q '^hawiya_rpc_calls_total{.*Enroll.*OK.*} 1$' <<<"$metrics" \
  || fail "metrics: no Enroll OK count of 1: $(grep -m3 rpc_calls_total <<<"$metrics")"
say "metrics: Enroll counted"
[ "$(stat -c %u "$tmp/data/hawiya.db")" = "$HAWIYA_UID" ] \
  || fail "hawiya.db in the data volume is not owned by uid $HAWIYA_UID"

# SIGTERM drains, writes the snapshot and exits 0 within podman's timeout.
podman stop --time 60 "$name" >/dev/null
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
[ "$exit_code" = 0 ] || fail "exit status $exit_code after podman stop"
ls "$tmp/data/snapshots/"* >/dev/null 2>&1 || fail "no shutdown snapshot in the data volume"
podman rm "$name" >/dev/null
say "stopped (exit 0, snapshot written), removed: PASS"
