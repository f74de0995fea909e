#!/usr/bin/env bash
# Installs the Debian 12 packages Hawiya builds with, if any is missing.
# Idempotent: does nothing (and needs no root) when all are present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  libfaiss-dev libopenblas-openmp-dev libabsl-dev libssl-dev libsqlite3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # The metrics endpoint (HTTP); promtool and a real Prometheus in its test.
  libcpp-httplib-dev prometheus
  # `hawiya eval` plots (DET, FNIR vs FPIR) and its test.
  gnuplot-nox
  # The Python partner client example and its test (docs/PARTNERS.md).
  python3-grpcio python3-grpc-tools python3-protobuf python3-cryptography
  # Clang's thread-safety analysis of the lock annotations
  # (deploy/check-thread-safety.sh, run by run-tests.sh).
  clang-14
  # systemd-analyze: the unit file test (tests/deploy/systemd_unit_test.sh).
  systemd
  # Kubernetes manifest checks (tests/deploy/kubernetes_test.sh; kubectl
  # itself: see docs/KUBERNETES.md, Debian 12's is too old to render them).
  yamllint
)
# Node.js for the same checks, if none is installed (any 18 or later will do).
command -v node > /dev/null || packages+=(nodejs)
command -v npm > /dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# FAISS's batched search runs on BLAS: the reference BLAS is ~40x slower than
# OpenBLAS. Say so if the system alternative points elsewhere.
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
case "$blas" in
  *openblas*) ;;
  *) echo "setup: warning: libblas.so.3 is $blas, not OpenBLAS (update-alternatives --config libblas.so.3-x86_64-linux-gnu)" >&2 ;;
esac
