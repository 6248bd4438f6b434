#!/usr/bin/env bash
# Extra: cost of the ingest path the lead proposed (last-write-wins upsert) vs plain COPY, on the
# first 3 days of data (10 %): COPY into a TEMP staging table, then
# INSERT ... SELECT ... ON CONFLICT DO UPDATE, in one transaction, into a truncated readings table.
# Run after load.sh/queries.sh (it truncates readings; rerun load.sh afterwards if you need the data).
# usage: bench/layout/upsert.sh [layout ...]  (default: narrow wide wjson)
set -euo pipefail
PSQL=${PSQL:-"psql -h 127.0.0.1 -U postgres -d pulse_layout -X -q -v ON_ERROR_STOP=1"}
DIR=${DIR:-/tmp/pulse_layout}
RUNS=${RUNS:-3}
OUT=$DIR/results; mkdir -p "$OUT"
VALUES=2592000   # 3 of 30 days
for L in ${*:-narrow wide wjson}; do
  case $L in
    narrow) ROWS=2592000; KEY="series_id, ts"; SET="value = EXCLUDED.value";;
    wide)   ROWS=864000;  KEY="device_id, ts"; SET="metric_set = EXCLUDED.metric_set, vals = EXCLUDED.vals";;
    wjson)  ROWS=864000;  KEY="device_id, ts"; SET="metrics = EXCLUDED.metrics";;
  esac
  head -n $ROWS "$DIR/$L.tsv" > "$DIR/$L.3d.tsv"
  for mode in copy upsert; do
    for r in $(seq 1 "$RUNS"); do
      $PSQL -c "TRUNCATE $L.readings" -c "CHECKPOINT"
      if [ $mode = copy ]; then
        cmds=(-c "\\copy $L.readings FROM '$DIR/$L.3d.tsv'")
      else
        cmds=(-c "BEGIN" -c "CREATE TEMP TABLE stage (LIKE $L.readings) ON COMMIT DROP"
              -c "\\copy stage FROM '$DIR/$L.3d.tsv'"
              -c "INSERT INTO $L.readings SELECT * FROM stage ON CONFLICT ($KEY) DO UPDATE SET $SET"
              -c "COMMIT")
      fi
      t0=$(date +%s.%N); $PSQL "${cmds[@]}"; t1=$(date +%s.%N)
      awk -v l="$L" -v m="$mode" -v r="$r" -v a="$t0" -v b="$t1" -v rows="$ROWS" -v vals="$VALUES" \
        'BEGIN { s = b - a; printf "%s\t%s\trun%d\t%.2f s\t%.0f rows/s\t%.0f values/s\n", l, m, r, s, rows / s, vals / s }' \
        | tee -a "$OUT/upsert.tsv"
    done
  done
  rm -f "$DIR/$L.3d.tsv"
done
