#!/usr/bin/env bash
# Configures and builds Hawiya into build/ (Ninja). Extra arguments are
# ninja targets; none builds everything.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/setup.sh
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
ninja -C build "$@"
