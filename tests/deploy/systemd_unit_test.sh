#!/usr/bin/env bash
# Installs the build into a staging root (as `cmake --install --prefix /usr`
# would on a host) and checks the installed hawiya.service offline:
# `systemd-analyze verify` must print nothing (it exits 0 on unknown keys
# and unknown sections, so any output is a failure), and the exposure score
# of `systemd-analyze security --offline=yes` must not exceed MAX_EXPOSURE.
# Usage: systemd_unit_test.sh BUILD_DIR
set -euo pipefail
MAX_EXPOSURE=1.5
build=${1:?usage: systemd_unit_test.sh BUILD_DIR}
stage=$(mktemp -d /tmp/hawiya-unit.XXXXXX)
trap 'rm -rf "$stage"' EXIT

DESTDIR="$stage" cmake --install "$build" --prefix /usr >/dev/null
unit=/usr/lib/systemd/system/hawiya.service
test -f "$stage$unit" || { echo "FAIL: $unit was not installed"; exit 1; }
# verify resolves the units hawiya.service names (network-online.target,
# multi-user.target, ...) inside the root: give it the host's.
cp -rn /usr/lib/systemd/system/. "$stage/usr/lib/systemd/system/"

out=$(cd / && systemd-analyze verify --root="$stage" "$unit" 2>&1) || {
  echo "FAIL: systemd-analyze verify exited $?:"; echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "FAIL: systemd-analyze verify printed:"; echo "$out"; exit 1
fi

report=$(cd / && systemd-analyze security --offline=yes --root="$stage" \
  "$unit" 2>&1)
score=$(sed -n 's/.*Overall exposure level for hawiya.service: \([0-9.]*\).*/\1/p' \
  <<<"$report")
if [ -z "$score" ]; then
  echo "FAIL: no exposure score in:"; echo "$report"; exit 1
fi
if awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s > m) }'; then
  echo "FAIL: exposure $score exceeds $MAX_EXPOSURE:"
  grep '✗' <<<"$report"
  exit 1
fi
echo "hawiya.service: verify clean, exposure $score (at most $MAX_EXPOSURE)"
