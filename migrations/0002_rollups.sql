-- Rollups: count, sum, min, max, first and last of every (device, metric) per minute,
-- hour and day, and of every (tenant, device status, metric) for the fleet-wide stats;
-- maintained from a watermark by src/modules/rollups (docs/decisions/0005-rollups.md).

-- Metric names as small ids: the rollup keys stay narrow (4 bytes instead of the name).
create table rollup_metrics (
  id   integer generated always as identity primary key,
  name text not null unique
);

-- One row per (device, metric, bucket); no foreign key (checking one per inserted row
-- doubled the refresh time): a device's rows go with it (trigger below). The primary key is the only index and the stats
-- read is a range of it; 1h and 1d carry the aggregates in the index (INCLUDE), so the
-- 30-day reads are index-only scans. 1m (as many rows as values at a 1-minute interval)
-- does not, to halve its size.
create table rollup_1m (
  device_id bigint not null,
  metric_id integer not null,
  bucket    timestamptz not null,
  count     bigint not null,
  sum       double precision not null,
  min       double precision not null,
  max       double precision not null,
  first_ts  timestamptz not null,
  first_v   double precision not null,
  last_ts   timestamptz not null,
  last_v    double precision not null,
  primary key (device_id, metric_id, bucket)
);
create table rollup_1h (like rollup_1m including defaults including constraints);
alter table rollup_1h add primary key (device_id, metric_id, bucket)
  include (count, sum, min, max, first_ts, first_v, last_ts, last_v);
create table rollup_1d (like rollup_1h including all);

-- The fleet: one row per (tenant, device status, metric, bucket), so a fleet-wide series
-- reads one or two rows per bucket instead of one per device.
create table fleet_rollup_1m (
  tenant_id bigint not null references tenants (id) on delete cascade,
  metric_id integer not null,
  bucket    timestamptz not null,
  status    text not null,
  count     bigint not null,
  sum       double precision not null,
  min       double precision not null,
  max       double precision not null,
  first_ts  timestamptz not null,
  first_v   double precision not null,
  last_ts   timestamptz not null,
  last_v    double precision not null,
  primary key (tenant_id, metric_id, bucket, status)
    include (count, sum, min, max, first_ts, first_v, last_ts, last_v)
);
create table fleet_rollup_1h (like fleet_rollup_1m including all);
alter table fleet_rollup_1h add foreign key (tenant_id) references tenants (id) on delete cascade;
create table fleet_rollup_1d (like fleet_rollup_1m including all);
alter table fleet_rollup_1d add foreign key (tenant_id) references tenants (id) on delete cascade;

-- Rollups hold every reading with ts < done. `pending` is where the next refresh goes;
-- writers record late data for ts < pending. The refresh moves `done` to `pending` only
-- once every transaction older than `pending_at` (which may not have seen `pending`) ended.
create table rollup_watermark (
  id         boolean primary key default true check (id),
  done       timestamptz,
  pending    timestamptz,
  pending_at timestamptz
);
insert into rollup_watermark default values;

-- Late data: hours of a device written below `pending`, to recompute. Writers bump
-- `version`, so a refresh deletes only the marks whose writes it has seen.
create table rollup_dirty (
  device_id bigint not null,
  hour      timestamptz not null,
  version   bigint not null default 1,
  primary key (device_id, hour)
);

-- Fleet hours to recompute because a device changed status or was deleted.
create table fleet_rollup_dirty (
  tenant_id bigint not null,
  hour      timestamptz not null,
  version   bigint not null default 1,
  primary key (tenant_id, hour)
);

-- The fleet rollups group devices by status: a device that changes status or goes away
-- makes every hour it has rollups in stale; a deleted device's own rollups go with it.
-- Waiting for the watermark row first orders this after a refresh chunk in flight, whose
-- rows it must see.
create function pulse_rollup_device_changed() returns trigger
language plpgsql as $$
begin
  perform 1 from rollup_watermark for share;
  insert into fleet_rollup_dirty (tenant_id, hour)
  select old.tenant_id, h.bucket from rollup_1h h where h.device_id = old.id group by h.bucket order by h.bucket
  on conflict (tenant_id, hour) do update set version = fleet_rollup_dirty.version + 1;
  if tg_op = 'DELETE' then
    delete from rollup_1m where device_id = old.id;
    delete from rollup_1h where device_id = old.id;
    delete from rollup_1d where device_id = old.id;
    delete from rollup_dirty where device_id = old.id;
  end if;
  return old;
end;
$$;

create trigger devices_rollup_status after update of status on devices
  for each row when (old.status is distinct from new.status) execute function pulse_rollup_device_changed();
create trigger devices_rollup_delete before delete on devices
  for each row execute function pulse_rollup_device_changed();

-- Usually empty: tell the planner so (a never-analyzed table is assumed to have pages).
analyze rollup_dirty, fleet_rollup_dirty;
