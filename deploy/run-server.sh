#!/usr/bin/env bash
# Builds and starts hawiya-server on its embedded default: SQLite under
# ./hawiya-data, mutual TLS on 127.0.0.1:50051 with the development PKI in
# ./hawiya-data/pki (written on first start; the CLI finds its certificates
# there). Extra arguments go to the server (see build/services/hawiya-server
# --help): --insecure for plaintext, or --tls_cert/--tls_key/--client_ca.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/build.sh hawiya-server hawiya
# FAISS's OpenMP threads must not spin on the cores gRPC and SQLite need.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec ./build/services/hawiya-server --data_dir=./hawiya-data \
  --config=deploy/hawiya.textproto "$@"
