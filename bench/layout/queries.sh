#!/usr/bin/env bash
# For every query file in queries/: EXPLAIN (ANALYZE, BUFFERS) with fixed parameters, 1 warm-up +
# N timed runs in one session (median planning and execution time), then pgbench throughput with
# random parameters (queries/vars.pgb): -M prepared -c 4 -j 2 -T 10.
# usage: bench/layout/queries.sh [pattern]   e.g. queries.sh 'narrow_*'
set -euo pipefail
cd "$(dirname "$0")"
CONN=${CONN:-"-h 127.0.0.1 -U postgres -d pulse_layout"}
DIR=${DIR:-/tmp/pulse_layout}
N=${N:-7}
T=${T:-10}
MODE=${MODE:-prepared}
OUT=$DIR/results; mkdir -p "$OUT/plans" "$OUT/pgb"
PAT=${1:-*}
# fixed parameters for EXPLAIN: device 42, metric 0 (temperature = series 124), page before 2025-06-16 08:00Z
VARS="-v d=42 -v m=0 -v sid=124 -v off=1281600"

for q in queries/$PAT.sql; do
  name=$(basename "$q" .sql)
  ex=$OUT/plans/$name.explain.sql
  : > "$ex"
  for i in $(seq 0 "$N"); do { printf 'EXPLAIN (ANALYZE, BUFFERS) '; cat "$q"; } >> "$ex"; done
  psql $CONN -X -q -At $VARS -f "$ex" > "$OUT/plans/$name.all.txt"
  # keep the last plan for reading
  awk 'BEGIN{RS="Execution Time: [0-9.]+ ms\n"} {last=$0; lastrt=RT} END{printf "%s%s", last, lastrt}' \
      "$OUT/plans/$name.all.txt" > "$OUT/plans/$name.txt"
  med() { grep -o "$1 Time: [0-9.]*" "$OUT/plans/$name.all.txt" | awk '{print $3}' | tail -n +2 | sort -g \
          | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
  plan_ms=$(med Planning); exec_ms=$(med Execution)
  pgb=$OUT/pgb/$name.pgb
  cat queries/vars.pgb "$q" > "$pgb"
  res=$(pgbench $CONN -n -M "$MODE" -c 4 -j 2 -T "$T" -f "$pgb" 2>&1)
  tps=$(echo "$res" | awk '/^tps/ {printf "%.0f", $3}')
  lat=$(echo "$res" | awk '/latency average/ {print $4}')
  printf '%-32s plan %8s ms  exec %9s ms  pgbench %8s tps  avg %7s ms\n' "$name" "$plan_ms" "$exec_ms" "$tps" "$lat" \
    | tee -a "$OUT/queries.txt"
done
