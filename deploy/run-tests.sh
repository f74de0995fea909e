#!/usr/bin/env bash
# Builds everything and runs every test (ctest, two at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/build.sh
cd build
# Tests run their own servers on free loopback ports; OpenMP threads would
# only oversubscribe the two cores.
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
ctest --output-on-failure --timeout 600 -j2 "$@"

# --- Thread-safety analysis -------------------------------------------------
# GCC cannot check the ABSL_GUARDED_BY annotations; clang-14 does, over the
# product code, as errors (deploy/check-thread-safety.sh, under a minute).
if (($# == 0)); then
  ../deploy/check-thread-safety.sh build
fi

# --- Container image -------------------------------------------------------
# The full run (no ctest arguments) also builds and tests the container
# image, when its inputs changed since the last pass on this host
# (deploy/container/ci-image.sh; docs/OPERATIONS.md, "Container"). A
# failure fails the run (set -e).
if (($# == 0)); then
  cd ..
  ./deploy/container/ci-image.sh build
fi
