#!/usr/bin/env bash
# Time COPY into each layout (PK index present, table truncated before each load, CHECKPOINT first),
# RUNS times per layout; the last load stays. Then fill `latest`, VACUUM ANALYZE, and record sizes.
# usage: bench/layout/load.sh [layout ...]   (default: narrow wide wjson)
set -euo pipefail
PSQL=${PSQL:-"psql -h 127.0.0.1 -U postgres -d pulse_layout -X -q -v ON_ERROR_STOP=1"}
DIR=${DIR:-/tmp/pulse_layout}
RUNS=${RUNS:-3}
OUT=$DIR/results; mkdir -p "$OUT"
LAYOUTS=${*:-narrow wide wjson}
VALUES=25920000   # 1,000 devices x 8,640 readings x 3 metrics

for L in $LAYOUTS; do
  case $L in narrow) ROWS=25920000;; *) ROWS=8640000;; esac
  for r in $(seq 1 "$RUNS"); do
    $PSQL -c "TRUNCATE $L.readings" -c "CHECKPOINT"
    t0=$(date +%s.%N)
    # log_statement_stats reports the backend's CPU time (getrusage) for the COPY: robust to
    # other work on the machine, unlike wall time. It excludes WAL writer/checkpointer/psql.
    cpu=$(PGOPTIONS="-c log_statement_stats=on -c client_min_messages=log" \
          $PSQL -c "\\copy $L.readings FROM '$DIR/$L.tsv'" 2>&1 \
          | awk '/s user,.*s system,.*elapsed/ { gsub(/!/, ""); print $1 + $4 }')
    t1=$(date +%s.%N)
    awk -v l="$L" -v r="$r" -v a="$t0" -v b="$t1" -v c="$cpu" -v rows="$ROWS" -v vals="$VALUES" \
      'BEGIN { s = b - a; printf "%s\trun%d\t%.2f s wall\t%.0f rows/s\t%.0f values/s\t%.2f s backend CPU\t%.0f values/CPU-s\n", l, r, s, rows / s, vals / s, c, vals / c }' \
      | tee -a "$OUT/copy.tsv"
  done
done

# latest: one row per series (narrow) / per device (wide, wjson), filled once from the data
$PSQL <<'SQL'
TRUNCATE narrow.latest, wide.latest, wjson.latest;
INSERT INTO narrow.latest
SELECT s.id, s.device_id, r.ts, r.value FROM narrow.series s
CROSS JOIN LATERAL (SELECT ts, value FROM narrow.readings r WHERE r.series_id = s.id ORDER BY ts DESC LIMIT 1) r;
INSERT INTO wide.latest
SELECT d.id, r.ts, r.metric_set, r.vals FROM devices d
CROSS JOIN LATERAL (SELECT ts, metric_set, vals FROM wide.readings r WHERE r.device_id = d.id ORDER BY ts DESC LIMIT 1) r;
INSERT INTO wjson.latest
SELECT d.id, r.ts, r.metrics FROM devices d
CROSS JOIN LATERAL (SELECT ts, metrics FROM wjson.readings r WHERE r.device_id = d.id ORDER BY ts DESC LIMIT 1) r;
SQL
# autovacuum is off on this server, so VACUUM (sets hint bits + visibility map) as well as ANALYZE
$PSQL -c "VACUUM (ANALYZE) devices, narrow.series, narrow.readings, narrow.latest, wide.metric_sets, wide.readings, wide.latest, wjson.readings, wjson.latest"

$PSQL -P footer=off -c "
SELECT n.nspname AS layout,
       sum(c.reltuples)::int8 AS rows,
       pg_size_pretty(sum(pg_relation_size(i.inhrelid))) AS heap,
       pg_size_pretty(sum(pg_indexes_size(i.inhrelid))) AS indexes,
       pg_size_pretty(sum(pg_total_relation_size(i.inhrelid))) AS total,
       sum(pg_total_relation_size(i.inhrelid)) AS total_bytes,
       round(sum(pg_total_relation_size(i.inhrelid)) / 25920000.0, 1) AS bytes_per_value,
       pg_size_pretty(pg_total_relation_size(n.nspname || '.latest')) AS latest_total
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
JOIN pg_namespace n ON n.oid = p.relnamespace
WHERE p.relname = 'readings' AND p.relkind = 'p'
GROUP BY n.nspname ORDER BY n.nspname" | tee "$OUT/sizes.txt"
