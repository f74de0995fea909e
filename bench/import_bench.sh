#!/usr/bin/env bash
# Bulk import throughput and CPU per person on each side (docs/PERFORMANCE.md,
# "Bulk import"): starts a fresh hawiya-server on a new data dir, runs
# `hawiya import` against it, and prints the rate, the CPU time (user + sys)
# of client and server per person, and, when `perf` can count them, their
# instructions per person, which a busy shared machine disturbs far less
# than time.
#
# Usage: bench/import_bench.sh BUILD_DIR FILE.jsonl [import flags...]
#   e.g. bench/import_bench.sh build-rel p100k.jsonl --batch=1000
# FILE from `BUILD_DIR/services/hawiya synth-persons --count=N > FILE`.
# PORT (default 50123), WORK (default a new temporary folder) and CONFIG (a
# server config file, e.g. one with `dedup { enabled: false }`; default: none,
# the server's defaults, deduplication on) may be set in the environment.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
build=$1
file=$2
shift 2
port=${PORT:-50123}
work=${WORK:-$(mktemp -d /tmp/hawiya-import-bench.XXXXXX)}
mkdir -p "$work"
rm -rf "$work/data" "$file.import-state"
lines=$(wc -l <"$file")
tick=$(getconf CLK_TCK)
counting=0
if command -v perf >/dev/null &&
  perf stat -e instructions:u true >/dev/null 2>&1; then
  counting=1
fi

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 "$build/services/hawiya-server" \
  --insecure --listen="127.0.0.1:$port" --data_dir="$work/data" \
  ${CONFIG:+--config="$CONFIG"} >"$work/server.out" 2>"$work/server.err" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q serving "$work/server.out" 2>/dev/null && break
  sleep 0.1
done
grep -q serving "$work/server.out" || {
  echo "server did not start; see $work/server.err" >&2
  exit 1
}

server_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
before=$(server_ticks)
if [[ $counting == 1 ]]; then
  perf stat -x, -e instructions:u,instructions:k -p "$server" \
    -o "$work/server.perf" 2>/dev/null &
  server_perf=$!
  client=(perf stat -x, -e instructions:u,instructions:k
    -o "$work/client.perf")
else
  client=()
fi
start=$(date +%s.%N)
"${client[@]}" /usr/bin/time -f "%e %U %S" -o "$work/client.time" \
  "$build/services/hawiya" import --file="$file" \
  --insecure --server="127.0.0.1:$port" "$@" >"$work/client.out" 2>"$work/client.err"
end=$(date +%s.%N)
if [[ $counting == 1 ]]; then
  kill -INT "$server_perf"
  wait "$server_perf" || true
fi
after=$(server_ticks)
# Which server threads did the work: the store queue's (named after the
# binary: BatchEnroll's validation, SQLite and galleries, one batch at a time)
# or gRPC's (receiving and parsing the requests).
for task in /proc/"$server"/task/*; do
  echo "$(cat "$task/comm") $(awk '{print $14 + $15}' "$task/stat")"
done | awk -v tick="$tick" -v n="$lines" '
  { cpu[$1] += $NF }
  END { for (t in cpu) if (cpu[t] > 0)
          printf "server thread %-16s %6.2f s, %4.0f us/person\n", t,
                 cpu[t] / tick, cpu[t] / tick / n * 1e6 }' | sort -k4 -nr
kill "$server"
wait "$server" || true
trap - EXIT
echo "load average at end:   $(cut -d' ' -f1-3 /proc/loadavg)"
# The store of a 100k run is ~0.7 GB; the logs stay.
rm -rf "$work/data" "$file.import-state"
echo "logs: $work"
cat "$work/client.out"

python3 - "$lines" "$start" "$end" "$before" "$after" "$tick" \
  "$work/client.time" "$counting" "$work" <<'EOF'
import sys
lines, start, end, before, after, tick = (float(x) for x in sys.argv[1:7])
time_path, counting, work = sys.argv[7], sys.argv[8] == "1", sys.argv[9]
wall = end - start
_, user, system = (float(x) for x in open(time_path).read().split()[-3:])
client = user + system
server = (after - before) / tick
print(f"{lines:.0f} persons in {wall:.2f} s: {lines / wall:,.0f} persons/s")
print(f"CPU per person: client {client / lines * 1e6:.0f} us "
      f"(user {user:.2f} s + sys {system:.2f} s), "
      f"server {server / lines * 1e6:.0f} us ({server:.2f} s)")
if counting:
    def instructions(path):
        counts = {}
        for row in open(path):
            fields = row.strip().split(",")
            if len(fields) > 2 and fields[2].startswith("instructions"):
                counts[fields[2].split(":")[1]] = float(fields[0])
        return counts
    c = instructions(f"{work}/client.perf")
    s = instructions(f"{work}/server.perf")
    print("instructions per person: "
          f"client {c.get('u', 0) / lines / 1e3:.0f}k user + "
          f"{c.get('k', 0) / lines / 1e3:.0f}k kernel, "
          f"server {s.get('u', 0) / lines / 1e3:.0f}k user + "
          f"{s.get('k', 0) / lines / 1e3:.0f}k kernel")
EOF
