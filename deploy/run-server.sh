#!/usr/bin/env bash
# Builds and starts hawiya-server on its embedded default: SQLite under
# ./hawiya-data, plaintext on 127.0.0.1:50051. Extra arguments go to the
# server (see build/services/hawiya-server --help).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/build.sh hawiya-server hawiya
# FAISS's OpenMP threads must not spin on the cores gRPC and SQLite need.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec ./build/services/hawiya-server --insecure --data_dir=./hawiya-data \
  --config=deploy/hawiya.textproto "$@"
