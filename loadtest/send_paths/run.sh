#!/bin/bash
# Each send path of send_paths.c on CPU 0, wrk -t1 -c64 on CPU 1 (as `cargo bench --bench
# hls`), ROUNDS alternating rounds of RUN_SECONDS each: requests/s and the server's CPU
# microseconds per request (utime + stime from /proc/PID/stat). Needs gcc and wrk.
set -eu
cd "$(dirname "$0")"
ROUNDS=${ROUNDS:-2} SECONDS_PER=${RUN_SECONDS:-6} PORT=${PORT:-9100}
OUT=${TMPDIR:-/tmp}/send_paths; mkdir -p "$OUT"
gcc -O2 -Wall -o "$OUT/send_paths" send_paths.c
head -c 643336 /dev/urandom > "$OUT/segment.ts"
cat "$OUT/segment.ts" > /dev/null   # in the page cache before mode 3 runs
names=(copy vmsplice memfd file)
for round in $(seq 1 "$ROUNDS"); do
  for mode in 0 1 2 3; do
    taskset -c 0 "$OUT/send_paths" "$mode" "$PORT" "$OUT/segment.ts" & pid=$!
    sleep 0.3
    t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    rps=$(taskset -c 1 wrk -t1 -c64 -d"${SECONDS_PER}s" "http://127.0.0.1:$PORT/s.ts" | awk '/Requests\/sec/{print $2}')
    t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v n="${names[$mode]}" -v r="$rps" -v t="$((t1 - t0))" -v s="$SECONDS_PER" -v k="$round" \
      'BEGIN { printf "round %d  %-9s %8.0f req/s  server CPU %3.0f%%  %5.1f us/req\n", k, n, r, t / s, t * 1e4 / (r * s) }'
  done
done
