#!/usr/bin/env bash
# Clang's thread-safety analysis over the product code (matcher/, enroll/,
# services/): every ABSL_GUARDED_BY, ABSL_EXCLUSIVE_LOCKS_REQUIRED and lock
# annotation is checked, as errors. GCC, which builds and tests Hawiya, has
# no such analysis. Reads the compile commands of BUILD_DIR (CMake writes
# compile_commands.json) and compiles nothing (-fsyntax-only): two files at
# a time, well under a minute on two cores.
# Usage: deploy/check-thread-safety.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
[ -f "$build/compile_commands.json" ] || {
  echo "check-thread-safety: no $build/compile_commands.json (run deploy/build.sh first)" >&2
  exit 2
}
if ! command -v clang++-14 > /dev/null; then
  echo "check-thread-safety: installing clang-14" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends clang-14
fi
python3 - "$build/compile_commands.json" "$PWD" <<'PY'
import json, shlex, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

commands, root = sys.argv[1], sys.argv[2]
jobs = []
for entry in json.load(open(commands)):
    path = entry["file"]
    if not any(path.startswith(f"{root}/{d}/") for d in ("matcher", "enroll", "services")):
        continue
    args = shlex.split(entry["command"])
    while args and not args[0].startswith("-") and not args[0].endswith(("c++", "g++")):
        args.pop(0)  # a launcher (ccache) before the compiler
    # GCC-only pragmas in the sources are not clang's business.
    out = ["clang++-14", "-fsyntax-only", "-Wthread-safety", "-Werror",
           "-Wno-unknown-warning-option"]
    skip = {"-o", "-MF", "-MT"}
    i = 1
    while i < len(args):
        a = args[i]
        if a in skip:
            i += 2
            continue
        if a not in ("-c", "-MD") and not a.startswith("-fopenmp"):
            out.append(a)
        i += 1
    jobs.append((entry["directory"], out, path))

def check(job):
    directory, argv, path = job
    result = subprocess.run(argv, cwd=directory, capture_output=True, text=True)
    return path, result.returncode, result.stderr

failed = 0
with ThreadPoolExecutor(2) as pool:
    for path, code, err in pool.map(check, jobs):
        if code != 0:
            failed += 1
            sys.stderr.write(err)
print(f"thread-safety analysis: {len(jobs) - failed} files clean, "
      f"{failed} with errors")
sys.exit(1 if failed or not jobs else 0)
PY
