import type { Db } from '../../infra/db.ts';
import type { DeviceRow } from '../devices/repository.ts';
import { LATE_SESSIONS_CTES } from '../sessions/late.ts';

/** Epoch microseconds <-> timestamptz, exactly (integer arithmetic on both sides). */
export const TS_IN = (param: string) => `timestamptz 'epoch' + ${param} * interval '1 microsecond'`;
export const TS_OUT = (col: string) => `(extract(epoch from ${col}) * 1000000)::int8`;

// ---- write path -------------------------------------------------------------------

/*
 * The conflict rules every writer of these tables follows (batcher flush, import, seed):
 * a stored reading is merged (the new metrics overwrite, the others stay; the table
 * aliased `r`), `latest` only moves forward per metric (the table aliased `l`), and a
 * late-data mark gets a new version (a rollup refresh in flight then recomputes its hour again).
 */
export const MERGE_READING = `on conflict (device_id, ts) do update
       set (metric_set, vals) = (select * from pulse_merge_reading(r.metric_set, r.vals, excluded.metric_set, excluded.vals))`;
export const LATEST_FORWARD = `on conflict (device_id) do update
       set (names, tss, vals, ts, ts_min) = (select * from pulse_merge_latest(l.names, l.tss, l.vals, l.ts,
                                              excluded.names, excluded.tss, excluded.vals, excluded.ts, excluded.ts_min))
       -- the same names, every stored value newer than every new one: nothing to change
       where not (l.names = excluded.names and l.ts_min > excluded.ts)`;

/**
 * `latest` rows (one per device: LatestParams, at parameters $first…$first+5) upserted,
 * each moving forward per metric.
 */
export const UPSERT_LATEST = (first: number) => {
  const p = (i: number) => `$${first + i}`;
  return `insert into latest as l (device_id, names, tss, vals, ts, ts_min)
       select d, n::text[], t::int8[], v::float8[], ${TS_IN('hi')}, ${TS_IN('lo')}
         from unnest(${p(0)}::int8[], ${p(1)}::text[], ${p(2)}::text[], ${p(3)}::text[], ${p(4)}::int8[], ${p(5)}::int8[]) as u(d, n, t, v, hi, lo)
       ${LATEST_FORWARD}`;
};

/**
 * A text[] literal of sorted metric names, the form metric sets are looked up by. Names hold
 * no `"`, `\`, comma or space (METRIC_PATTERN); only `null` in any case must be quoted, or
 * PostgreSQL reads it as a NULL element. The others stay bare, so array parameters of these
 * literals need no escaping (src/infra/pg-array.ts).
 */
export const namesLiteral = (names: readonly string[]) => `{${names.map((n) => (NULL_WORD.test(n) ? `"${n}"` : n)).join(',')}}`;
const NULL_WORD = /^null$/i;

/** `latest`'s rows as statement parameters: per device (sorted), array literals of its names, times (µs) and values. */
export interface LatestParams {
  devices: number[];
  names: string[];
  tss: string[];
  vals: string[];
  newestUs: number[];
  oldestUs: number[];
}

/** A device's newest value per metric, as the writers collect them. */
export type NewestValues = Map<string, { t: number; v: number }>;

/** LatestParams of devices given as (id, newest values per metric); names in byte order, as metric sets sort them. */
export function latestParams(devices: Iterable<[number, NewestValues]>): LatestParams {
  const out: LatestParams = { devices: [], names: [], tss: [], vals: [], newestUs: [], oldestUs: [] };
  for (const [id, newest] of [...devices].sort((a, b) => a[0] - b[0])) {
    if (!newest.size) continue;
    const names = [...newest.keys()].sort();
    let hi = -Infinity;
    let lo = Infinity;
    let tss = '';
    let vals = '';
    for (const name of names) {
      const { t, v } = newest.get(name)!;
      if (t > hi) hi = t;
      if (t < lo) lo = t;
      tss += `${tss ? ',' : ''}${t}`;
      vals += `${vals ? ',' : ''}${v}`;
    }
    out.devices.push(id);
    out.names.push(namesLiteral(names));
    out.tss.push(`{${tss}}`);
    out.vals.push(`{${vals}}`);
    out.newestUs.push(hi);
    out.oldestUs.push(lo);
  }
  return out;
}
export const MARK_DIRTY = 'on conflict (device_id, hour) do update set version = rollup_dirty.version + 1';

/** Devices by (tenant, external id) pairs: one statement for a batch of many tenants. */
export async function findDeviceIds(db: Db, tenantIds: number[], externalIds: string[]) {
  return db.query<{ id: number; tenant_id: number; external_id: string }>(
    'ingest.find_devices',
    `select d.id, d.tenant_id, d.external_id
       from unnest($1::int8[], $2::text[]) as k(tenant_id, external_id)
       join devices d on d.tenant_id = k.tenant_id and d.external_id = k.external_id`,
    [tenantIds, externalIds],
  );
}

/**
 * Creates the devices that do not exist (sorted, so concurrent writers lock in one order);
 * returns only those this statement inserted, whole (the device.created event's data).
 */
export async function insertDevices(db: Db, tenantIds: number[], externalIds: string[]) {
  return db.query<DeviceRow & { tenant_id: number }>(
    'ingest.insert_devices',
    `insert into devices (tenant_id, external_id)
     select t, e from unnest($1::int8[], $2::text[]) as k(t, e) order by t, e
     on conflict (tenant_id, external_id) do nothing
     returning id, tenant_id, external_id, name, status, metadata, created_at, updated_at`,
    [tenantIds, externalIds],
  );
}

/** Metric sets by their names, each given as a '{a,b}' array literal of sorted names. */
export async function findMetricSets(db: Db, names: string[]) {
  return db.query<{ id: number; names: string[] }>(
    'ingest.find_metric_sets',
    `select m.id, m.names from unnest($1::text[]) as k(names) join metric_sets m on m.names = k.names::text[]`,
    [names],
  );
}

export async function insertMetricSets(db: Db, names: string[]) {
  return db.query<{ id: number; names: string[] }>(
    'ingest.insert_metric_sets',
    `insert into metric_sets (names)
     select k.names::text[] from unnest($1::text[]) as k(names) order by 1
     on conflict (names) do nothing
     returning id, names`,
    [names],
  );
}

export interface WriteRows {
  /** Readings: one per (device, ts), sorted, unique; `vals` as float8[] literals. */
  deviceIds: number[];
  tsUs: number[];
  sets: number[];
  vals: string[];
  /** Latest: one row per device, the newest of the batch per metric. */
  latest: LatestParams;
}

/**
 * Readings and `latest` in one statement (data-modifying CTEs: atomic on its own, so a
 * flush whose devices and metric sets are known is a single round trip and one commit),
 * with the rollups' late-data marks and the completed sessions it makes stale (their
 * re-summary jobs queued in the same statement).
 * A reading that already exists is merged: the new metrics overwrite, the others stay.
 * `latest` only moves forward. Its foreign key to devices also guards against writing
 * to a device deleted since its id was cached (23503). Readings older than the rollup
 * watermark's target mark their (device, hour) for recomputation (src/modules/rollups).
 */
export async function writeReadings(db: Db, w: WriteRows) {
  await db.query(
    'ingest.write',
    `with r as (
       insert into readings as r (device_id, ts, metric_set, vals)
       select d, ${TS_IN('t')}, m, v::float8[] from unnest($1::int8[], $2::int8[], $3::int4[], $4::text[]) as u(d, t, m, v)
       ${MERGE_READING}
     ), newest as (
       ${UPSERT_LATEST(5)}
     ), late as (
       -- hours below the rollup watermark's target: recomputed by the next refresh
       insert into rollup_dirty (device_id, hour)
       select distinct d, date_bin('1 hour', ${TS_IN('t')}, timestamptz 'epoch')
         from unnest($1::int8[], $2::int8[]) as u(d, t)
        where ${TS_IN('t')} < (select pending from rollup_watermark)
        order by 1, 2
       ${MARK_DIRTY}
     ), ${LATE_SESSIONS_CTES(`select d as device_id, min(${TS_IN('t')}) as lo, max(${TS_IN('t')}) as hi
                                 from unnest($1::int8[], $2::int8[]) as u(d, t) group by d`)}
     select (select n from late_jobs)`,
    [w.deviceIds, w.tsUs, w.sets, w.vals, w.latest.devices, w.latest.names, w.latest.tss, w.latest.vals, w.latest.newestUs, w.latest.oldestUs],
  );
}

// ---- read path --------------------------------------------------------------------

export interface LatestRow {
  device_id: number;
  metric: string | null;
  ts_us: number | null;
  value: number | null;
}

/** The device (a row with nulls when it has no readings yet) and the latest value of each metric. */
export async function latestOfDevice(db: Db, tenantId: number, externalId: string) {
  return db.query<LatestRow>(
    'readings.latest_of_device',
    `select d.id as device_id, u.metric, u.ts_us, u.value
       from devices d
       left join latest l on l.device_id = d.id
       left join lateral unnest(l.names, l.tss, l.vals) with ordinality as u(metric, ts_us, value, i) on true
      where d.tenant_id = $1::bigint and d.external_id = $2::text
      order by u.i -- the row's order: names in byte order`,
    [tenantId, externalId],
  );
}

export interface RangeRow {
  device_id: number;
  ts_us: number | null;
  /** All metrics (no metric asked for). */
  names: string[] | null;
  vals: number[] | null;
  /** The asked-for metric's value: a scalar, so no arrays cross the wire. */
  value: number | null;
}

/**
 * The device, and a page of its readings newest first with ts in [from, to) and before
 * the cursor, optionally only those that have `metric`: one statement, one index range.
 * No row: no such device; one row with nulls: no readings in range.
 */
export async function rangePage(
  db: Db,
  tenantId: number,
  externalId: string,
  metric: string | null,
  fromUs: number,
  beforeUs: number,
  limit: number,
) {
  return db.query<RangeRow>(
    'readings.range_page',
    `select d.id as device_id, p.ts_us, p.names, p.vals, p.value
       from devices d
       left join lateral (
         select ${TS_OUT('r.ts')} as ts_us,
                case when $3::text is null then m.names end as names,
                case when $3::text is null then r.vals end as vals,
                r.vals[array_position(m.names, $3::text)] as value
           from readings r join metric_sets m on m.id = r.metric_set
          where r.device_id = d.id
            and r.ts >= ${TS_IN('$4::int8')} and r.ts < ${TS_IN('$5::int8')}
            and ($3::text is null or $3::text = any(m.names))
          order by r.ts desc
          limit $6::int
       ) p on true
      where d.tenant_id = $1::bigint and d.external_id = $2::text
      order by p.ts_us desc`,
    [tenantId, externalId, metric, fromUs, beforeUs, limit],
  );
}

export interface DashboardRow {
  device: string;
  device_ts_us: number;
  metric: string;
  ts_us: number;
  value: number;
}

/** The devices (optionally of one status) with the newest readings since a time, newest first, with their latest values. */
export async function dashboard(db: Db, tenantId: number, status: string | null, sinceUs: number, limit: number) {
  return db.query<DashboardRow>(
    'readings.dashboard',
    `with top as (
       -- the tenant's devices joined with their one latest row each, the top N by its newest
       -- time: no aggregate per device, as a row per metric needed (~4 → ~2.5 ms from Node,
       -- 100 of 900 active devices in the benchmark: decision 0008)
       select d.id, d.external_id, l.ts, l.names, l.tss, l.vals
         from devices d
         join latest l on l.device_id = d.id
        where d.tenant_id = $1::bigint and ($2::text is null or d.status = $2::text)
          and l.ts >= ${TS_IN('$3::int8')}
        order by l.ts desc, d.id
        limit $4::int
     )
     select top.external_id as device, ${TS_OUT('top.ts')} as device_ts_us, u.metric, u.ts_us, u.value
       from top
       cross join lateral unnest(top.names, top.tss, top.vals) with ordinality as u(metric, ts_us, value, i)
      order by top.ts desc, top.id, u.i`,
    [tenantId, status, sinceUs, limit],
    // custom plans (each folds `$2 is null or` away), though planning costs ~0.4–1.4 ms: a
    // generic plan is fitted to an average tenant, and once another tenant had 150,000
    // devices it read the whole devices table for a tenant of 1,000 (22 ms instead of 3.4)
  );
}
