#!/usr/bin/env bash
# CI's container step (run by deploy/run-tests.sh): builds the image and
# runs test-image.sh only when the image's inputs changed since the last
# run that passed here. Building takes ~1.5 min and downloads ~90 Debian
# packages; the test alone takes ~3 s.
#
# The inputs' key is the SHA-256 of: every file in deploy/container/, the
# install rules (deploy/CMakeLists.txt, cmake/install_system_files.cmake),
# the installed configuration and example (deploy/hawiya.textproto,
# deploy/systemd/, deploy/examples/person.json), the project version (the
# image tag), and the runtime packages the binaries link with the host's
# installed version of each (so a new library dependency or a Debian
# update rebuilds). The server's and CLI's own source is not part of the
# key: the test suite covers their behaviour. A pass writes the key to
# $HAWIYA_CI_CACHE/container-image.key (default /var/cache/hawiya-ci,
# outside the checkout); the step is skipped when that key matches and the
# image still exists. HAWIYA_CONTAINER_TEST=always forces a rebuild and test,
# =never skips the step.
#
# Usage: deploy/container/ci-image.sh [--key] [BUILD_DIR]   (default: build)
#   --key: print the inputs' key and exit.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
print_key=false
if [ "${1:-}" = --key ]; then print_key=true; shift; fi
build_dir=$(realpath "${1:-$repo/build}")
cache=${HAWIYA_CI_CACHE:-/var/cache/hawiya-ci}
stamp="$cache/container-image.key"
mode=${HAWIYA_CONTAINER_TEST:-changed}

# shellcheck source=deploy/container/common.sh
source "$repo/deploy/container/common.sh"

$print_key || case "$mode" in
  never) echo "container image: skipped (HAWIYA_CONTAINER_TEST=never)" >&2; exit 0 ;;
  changed | always) ;;
  *) echo "container image: HAWIYA_CONTAINER_TEST must be changed, always or never" >&2; exit 2 ;;
esac

inputs_key() {
  local pkgs
  pkgs=$(runtime_packages "$build_dir")
  {
    (cd "$repo" && find deploy/container deploy/systemd -type f -print0 | sort -z \
      | xargs -0 sha256sum)
    (cd "$repo" && sha256sum deploy/CMakeLists.txt cmake/install_system_files.cmake \
      deploy/hawiya.textproto deploy/examples/person.json)
    echo "version $(hawiya_version)"
    # shellcheck disable=SC2086
    dpkg-query -W -f='${Package} ${Version}\n' $pkgs
  } | sha256sum | cut -d' ' -f1
}

key=$(inputs_key)
if $print_key; then echo "$key"; exit 0; fi
image=$(hawiya_image)
if [ "$mode" = changed ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ] \
  && podman image exists "$image" 2>/dev/null; then
  echo "container image: inputs unchanged (key ${key:0:12}, passed $(date -u -r "$stamp" +%FT%TZ)): skipped" >&2
  exit 0
fi

start=$SECONDS
echo "container image: inputs key ${key:0:12}: building and testing $image" >&2
"$repo/deploy/container/build-image.sh" "$build_dir" >/dev/null
"$repo/deploy/container/test-image.sh" "$build_dir"
mkdir -p "$cache"
echo "$key" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
echo "container image: passed in $((SECONDS - start)) s; key written to $stamp" >&2
