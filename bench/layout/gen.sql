-- Generate the COPY input files once (client side, psql \copy), identical values in every layout.
-- 1,000 devices x 8,640 readings (every 5 min for 30 days from 2025-06-01 12:00Z) x 3 metrics
-- = 8,640,000 readings = 25,920,000 values. Rows are in arrival order (time-major: all
-- devices for one interval, then the next), each device has a fixed 0..299 s phase offset.
-- Values are deterministic (no random()), rounded to 2 decimals like real sensors.
-- usage: psql -v dir=/tmp/pulse_layout -f gen.sql   (COPY TO STDOUT goes to the \o file, client side)
\set ON_ERROR_STOP on
SET timezone = 'UTC';
CREATE OR REPLACE FUNCTION pg_temp.v(i int, d int, m int) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
  SELECT round((CASE m
    WHEN 1 THEN 20   + 5  * sin(2 * pi() * i / 288.0  + d)       -- temperature, daily cycle
    WHEN 2 THEN 50   + 10 * sin(2 * pi() * i / 288.0  + d / 2.0) -- humidity
    ELSE        1013 + 3  * sin(2 * pi() * i / 2016.0 + d)       -- pressure, weekly cycle
  END + (abs(sin(i * 12.9898 + d * 78.233 + m * 37.719) * 43758.5453))::numeric % 1.0 - 0.5)::numeric, 2)::float8
$$;
\o :dir/narrow.tsv
-- narrow: series_id, ts, value  (n enumerates (interval i, device d, metric m) in arrival order)
COPY (SELECT (d - 1) * 3 + m, timestamptz '2025-06-01 12:00:00+00' + make_interval(secs => i * 300 + (d * 37) % 300), pg_temp.v(i, d, m) FROM (SELECT n / 3000 AS i, (n / 3) % 1000 + 1 AS d, n % 3 + 1 AS m FROM generate_series(0, 25919999) n) g) TO STDOUT;
\o
\o :dir/wide.tsv
-- wide: device_id, ts, metric_set, vals
COPY (SELECT d, timestamptz '2025-06-01 12:00:00+00' + make_interval(secs => i * 300 + (d * 37) % 300), 1, ARRAY[pg_temp.v(i, d, 1), pg_temp.v(i, d, 2), pg_temp.v(i, d, 3)] FROM (SELECT n / 1000 AS i, n % 1000 + 1 AS d FROM generate_series(0, 8639999) n) g) TO STDOUT;
\o
\o :dir/wjson.tsv
-- wjson: device_id, ts, metrics
COPY (SELECT d, timestamptz '2025-06-01 12:00:00+00' + make_interval(secs => i * 300 + (d * 37) % 300), jsonb_build_object('temperature', pg_temp.v(i, d, 1), 'humidity', pg_temp.v(i, d, 2), 'pressure', pg_temp.v(i, d, 3)) FROM (SELECT n / 1000 AS i, n % 1000 + 1 AS d FROM generate_series(0, 8639999) n) g) TO STDOUT;
\o
