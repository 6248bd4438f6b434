-- pulse schema: tenants, keys, devices, metric sets, readings (daily partitions), latest.
-- The readings layout (wide: one row per reading) is chosen by measurement:
-- docs/decisions/0001-readings-layout.md.

create table tenants (
  id                  bigint generated always as identity primary key,
  name                text not null unique check (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
  auto_create_devices boolean not null default true,
  created_at          timestamptz not null default now()
);

create table api_keys (
  id           bigint generated always as identity primary key,
  tenant_id    bigint not null references tenants (id) on delete cascade,
  -- the first characters of the key, shown in listings so a person can tell keys apart
  prefix       text not null,
  -- sha256 of the whole key: keys carry 192 random bits, so a slow hash adds nothing
  hash         bytea not null unique,
  scopes       text[] not null check (scopes <@ array['read', 'write', 'admin']::text[] and cardinality(scopes) > 0),
  name         text,
  created_at   timestamptz not null default now(),
  revoked_at   timestamptz
);
create index api_keys_tenant_idx on api_keys (tenant_id);

create table devices (
  id          bigint generated always as identity primary key,
  tenant_id   bigint not null references tenants (id) on delete cascade,
  external_id text not null,
  name        text,
  status      text not null default 'active' check (status in ('active', 'inactive')),
  metadata    jsonb not null default '{}'::jsonb,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  unique (tenant_id, external_id)
);
-- the keyset listing filtered by status
create index devices_tenant_status_idx on devices (tenant_id, status, external_id);

-- Readings are wide: one row per (device, ts) with the values of its metrics in an
-- array, named by a metric-set dictionary entry (docs/decisions/0001-readings-layout.md:
-- ~3x less CPU per value and half the storage of one row per value).
create table metric_sets (
  id    integer generated always as identity primary key,
  -- sorted, distinct metric names; vals[i] is the value of names[i]
  names text[] not null unique check (cardinality(names) between 1 and 256)
);

create table readings (
  device_id  bigint not null,
  ts         timestamptz not null,
  metric_set integer not null,
  vals       double precision[] not null,
  primary key (device_id, ts)
) partition by range (ts);
-- No foreign keys on readings: checking them per row would cost a large share of ingest;
-- readings of a deleted device are deleted with it, metric sets are never deleted.

-- Catches rows for days that have no partition yet, so no write ever fails for lack of
-- one; pulse_ensure_partitions moves such rows into the day's partition when it creates it.
create table readings_default partition of readings default;

-- Creates the daily partitions readings_YYYYMMDD for [p_from, p_from + p_days) (UTC days)
-- that do not exist yet, moving any rows of those days out of the default partition.
create function pulse_ensure_partitions(p_from date, p_days integer) returns integer
language plpgsql as $$
declare
  d date;
  created integer := 0;
  part text;
begin
  for i in 0 .. p_days - 1 loop
    d := p_from + i;
    part := 'readings_' || to_char(d, 'YYYYMMDD');
    continue when to_regclass(part) is not null;
    -- serialise partition creation across processes; the check is repeated under the lock
    perform pg_advisory_xact_lock(hashtext('pulse_ensure_partitions'));
    continue when to_regclass(part) is not null;
    execute format('create table %I (like readings including defaults including constraints)', part);
    execute format(
      'with moved as (delete from readings_default where ts >= %L::timestamptz and ts < %L::timestamptz returning *) '
      'insert into %I select * from moved',
      d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00', part);
    execute format(
      'alter table readings attach partition %I for values from (%L) to (%L)',
      part, d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
    created := created + 1;
  end loop;
  return created;
end;
$$;

-- A reading sent again for a device and ts that already has one is merged into it: its
-- metrics overwrite, the others stay (devices and agents often send one reading in parts).
create function pulse_merge_reading(
  old_set integer, old_vals double precision[], new_set integer, new_vals double precision[],
  out metric_set integer, out vals double precision[])
language plpgsql as $$
declare
  old_names text[];
  new_names text[];
  merged text[];
begin
  if old_set = new_set then
    metric_set := new_set;
    vals := new_vals;
    return;
  end if;
  select m.names into old_names from metric_sets m where m.id = old_set;
  select m.names into new_names from metric_sets m where m.id = new_set;
  if old_names <@ new_names then
    metric_set := new_set;
    vals := new_vals;
    return;
  end if;
  -- byte order, as the application sorts names (whatever the database's collation)
  select array_agg(n order by n collate "C") into merged from (select unnest(old_names) union select unnest(new_names)) u(n);
  select array_agg(coalesce(new_vals[array_position(new_names, n)], old_vals[array_position(old_names, n)]) order by i)
    into vals from unnest(merged) with ordinality u(n, i);
  insert into metric_sets (names) values (merged) on conflict (names) do nothing;
  select m.id into metric_set from metric_sets m where m.names = merged;
end;
$$;

-- The newest value of every (device, metric), upserted by ingest only when newer: latest
-- values and the dashboard never scan readings.
create table latest (
  device_id bigint not null references devices (id) on delete cascade,
  metric    text not null,
  ts        timestamptz not null,
  value     double precision not null,
  primary key (device_id, metric)
);
