-- THE "BEFORE" — bench baseline only, never shipped (nothing in src/ uses these tables).
--
-- The schema of the slow systems pulse learns from: one wide-ish row per value, plain-text
-- API keys, and only the primary keys — no secondary indexes at all, so every lookup by
-- device, metric or time is a sequential scan. That is the point: pulse bench measures
-- pulse against this.
--
-- (Re)created by bench/baseline/load.ts; running this file drops the baseline tables.

drop table if exists baseline_readings;
drop table if exists baseline_devices;
drop table if exists baseline_keys;

create table baseline_keys (
  key    text,
  tenant text
);

create table baseline_devices (
  id          serial primary key,
  tenant      text,
  external_id text,
  status      text
);

create table baseline_readings (
  id        bigserial primary key,
  device_id int,
  metric    text,
  ts        timestamptz,
  value     double precision
);
