-- pulse readings-layout benchmark: schema for all candidate layouts.
-- Run in a scratch database (default: pulse_layout). Idempotent: drops and recreates.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS narrow CASCADE;
DROP SCHEMA IF EXISTS wide CASCADE;
DROP SCHEMA IF EXISTS wjson CASCADE;
DROP TABLE IF EXISTS devices CASCADE;

-- 1,000 devices in 10 tenants, every 10th device inactive (10 %).
CREATE TABLE devices (
  id          int8 PRIMARY KEY,
  tenant_id   int8 NOT NULL,
  external_id text NOT NULL,
  status      text NOT NULL CHECK (status IN ('active', 'inactive')),
  UNIQUE (tenant_id, external_id)
);
INSERT INTO devices
SELECT d, (d - 1) / 100 + 1, 'sensor-' || d, CASE WHEN d % 10 = 0 THEN 'inactive' ELSE 'active' END
FROM generate_series(1, 1000) d;

-- A. narrow: one row per value --------------------------------------------
CREATE SCHEMA narrow;
CREATE TABLE narrow.series (
  id        int4 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  device_id int8 NOT NULL REFERENCES devices(id),
  metric    text NOT NULL,
  UNIQUE (device_id, metric)
);
-- deterministic ids: series id = (device_id - 1) * 3 + metric_no (1 temperature, 2 humidity, 3 pressure)
INSERT INTO narrow.series (device_id, metric)
SELECT d, (ARRAY['temperature','humidity','pressure'])[m]
FROM generate_series(1, 1000) d, generate_series(1, 3) m ORDER BY d, m;

CREATE TABLE narrow.readings (
  series_id int4        NOT NULL,
  ts        timestamptz NOT NULL,
  value     float8      NOT NULL,
  PRIMARY KEY (series_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE narrow.latest (
  series_id int4 PRIMARY KEY,
  device_id int8 NOT NULL,
  ts        timestamptz NOT NULL,
  value     float8 NOT NULL
);
CREATE INDEX ON narrow.latest (device_id);

-- B. wide: one row per reading, values as float8[] keyed by a metric-set dictionary
CREATE SCHEMA wide;
CREATE TABLE wide.metric_sets (
  id    int2 PRIMARY KEY,
  names text[] NOT NULL UNIQUE
);
INSERT INTO wide.metric_sets VALUES (1, ARRAY['temperature','humidity','pressure']);

CREATE TABLE wide.readings (
  device_id  int8        NOT NULL,
  ts         timestamptz NOT NULL,
  metric_set int2        NOT NULL,
  vals       float8[]    NOT NULL,
  PRIMARY KEY (device_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE wide.latest (
  device_id  int8 PRIMARY KEY,
  ts         timestamptz NOT NULL,
  metric_set int2 NOT NULL,
  vals       float8[] NOT NULL
);

-- C. wide with jsonb (the common naive choice) -----------------------------
CREATE SCHEMA wjson;
CREATE TABLE wjson.readings (
  device_id int8        NOT NULL,
  ts        timestamptz NOT NULL,
  metrics   jsonb       NOT NULL,
  PRIMARY KEY (device_id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE wjson.latest (
  device_id int8 PRIMARY KEY,
  ts        timestamptz NOT NULL,
  metrics   jsonb NOT NULL
);

-- daily partitions 2025-06-01 .. 2025-07-01 (the 30 days of data run from
-- 2025-06-01 12:00Z to 2025-07-01 12:00Z, so they touch 31 calendar days) + DEFAULT
DO $$
DECLARE s text; day date;
BEGIN
  FOREACH s IN ARRAY ARRAY['narrow','wide','wjson'] LOOP
    FOR day IN SELECT generate_series(date '2025-06-01', date '2025-07-01', interval '1 day')::date LOOP
      EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.readings FOR VALUES FROM (%L) TO (%L)',
                     s, 'readings_' || to_char(day, 'YYYYMMDD'), s,
                     day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
    END LOOP;
    EXECUTE format('CREATE TABLE %I.readings_default PARTITION OF %I.readings DEFAULT', s, s);
  END LOOP;
END $$;
