import type { Db } from '../../infra/db.ts';
import { TS_IN, TS_OUT } from '../readings/repository.ts';
import { AGG_COLUMNS, aggOf, combine, EPOCH, MERGE, RAW_PARTIAL, REPLACE } from './sql.ts';

/** Only one refresh step runs at a time across processes; the others skip. */
export async function tryLock(tx: Db): Promise<boolean> {
  const rows = await tx.query<{ ok: boolean }>('rollups.try_lock', `select pg_try_advisory_xact_lock(hashtext('pulse_rollups')) as ok`);
  return rows[0]!.ok;
}

export interface Watermark {
  done_us: number | null;
  pending_us: number | null;
  pending_at_us: number | null;
}

export async function lockWatermark(tx: Db): Promise<Watermark> {
  const rows = await tx.query<Watermark>(
    'rollups.lock_watermark',
    `select ${TS_OUT('done')} as done_us, ${TS_OUT('pending')} as pending_us, ${TS_OUT('pending_at')} as pending_at_us
       from rollup_watermark for update`,
  );
  return rows[0]!;
}

export async function readDone(db: Db): Promise<number | null> {
  const rows = await db.query<{ done_us: number | null }>('rollups.read_done', `select ${TS_OUT('done')} as done_us from rollup_watermark`);
  return rows[0]?.done_us ?? null;
}

/** The next target; `pending_at` is stamped by a later statement (see markPendingVisible). */
export async function setPending(tx: Db, pendingUs: number) {
  await tx.query('rollups.set_pending', `update rollup_watermark set pending = ${TS_IN('$1::int8')}, pending_at = null`, [pendingUs]);
}

/** Run after setPending committed: every transaction starting after the stamp sees `pending`. */
export async function markPendingVisible(tx: Db): Promise<number> {
  const rows = await tx.query<{ us: number }>(
    'rollups.mark_pending_visible',
    `update rollup_watermark set pending_at = coalesce(pending_at, statement_timestamp()) returning ${TS_OUT('pending_at')} as us`,
  );
  return rows[0]!.us;
}

/**
 * Whether some other client transaction of this database started before `pending` was
 * visible: it may still commit readings below `pending` without marking them late.
 */
export async function olderTransactionsRunning(db: Db, pendingAtUs: number): Promise<boolean> {
  const rows = await db.query<{ n: number }>(
    'rollups.older_transactions',
    `select count(*)::int as n from pg_stat_activity
      where datname = current_database() and backend_type = 'client backend' and pid <> pg_backend_pid()
        and state <> 'idle' and xact_start < ${TS_IN('$1::int8')}`,
    [pendingAtUs],
  );
  return rows[0]!.n > 0;
}

export async function setDone(tx: Db, doneUs: number) {
  await tx.query('rollups.set_done', `update rollup_watermark set done = ${TS_IN('$1::int8')}`, [doneUs]);
}

/** The oldest reading's hour (where rollups start), or null with no readings. */
export async function firstReadingHour(db: Db): Promise<number | null> {
  const rows = await db.query<{ us: number | null }>(
    'rollups.first_reading',
    `select ${TS_OUT(`date_bin('1 hour', min(ts), ${EPOCH})`)} as us from readings`,
  );
  return rows[0]?.us ?? null;
}

/** A refresh transaction sorts up to a day of readings and may outlast the API statement timeout. */
export async function setBatchLimits(tx: Db) {
  await tx.query('rollups.batch_limits', `select set_config('work_mem', '128MB', true), set_config('statement_timeout', '600s', true)`);
}

export async function registerMetrics(tx: Db) {
  await tx.query(
    'rollups.register_metrics',
    `insert into rollup_metrics (name)
     select n from (select distinct unnest(names) as n from metric_sets) s
      where not exists (select 1 from rollup_metrics r where r.name = s.n)
      order by n
     on conflict (name) do nothing`,
  );
}

const RAW_VALUES = `readings r
       join metric_sets m on m.id = r.metric_set
       cross join lateral unnest(m.names, r.vals) as u(name, v)
       join rollup_metrics rm on rm.name = u.name`;
const KEYS = 'device_id, metric_id, bucket';
const FLEET_KEYS = 'tenant_id, metric_id, bucket, status';

/**
 * Aggregates the readings of [from, to) (whole minutes past the watermark: new rows) into
 * 1m rows, and from those the deltas merged into the 1h, 1d and fleet rows: one statement.
 * Each coarser level is built from the smallest delta below it, so the large sorts are
 * the readings' and the 1m rows'.
 */
export async function advance(tx: Db, fromUs: number, toUs: number) {
  const up = (src: string, keys: string, level: string) =>
    combine(keys, `select ${keys.replace('bucket', `date_bin('${level}', bucket, ${EPOCH}) as bucket`)}, ${AGG_COLUMNS} from ${src}`);
  await tx.query(
    'rollups.advance',
    `with src as (
       select r.device_id, rm.id as metric_id, date_bin('1 minute', r.ts, ${EPOCH}) as bucket, ${RAW_PARTIAL('r.ts', 'u.v')}
         from ${RAW_VALUES}
        where r.ts >= ${TS_IN('$1::int8')} and r.ts < ${TS_IN('$2::int8')} and u.v is not null
     ), m as (
       insert into rollup_1m (${KEYS}, ${AGG_COLUMNS}) ${combine(KEYS, 'select * from src')}
       returning ${KEYS}, ${AGG_COLUMNS}
     ), dh as (${up('m', KEYS, '1 hour')}
     ), h as (
       insert into rollup_1h as t (${KEYS}, ${AGG_COLUMNS}) select * from dh
       on conflict (${KEYS}) ${MERGE('t')}
     ), d as (
       insert into rollup_1d as t (${KEYS}, ${AGG_COLUMNS}) ${up('dh', KEYS, '1 day')}
       on conflict (${KEYS}) ${MERGE('t')}
     ), fm as (
       insert into fleet_rollup_1m (${FLEET_KEYS}, ${AGG_COLUMNS}) ${combine(
         FLEET_KEYS,
         `select d.tenant_id, m.metric_id, m.bucket, d.status, ${aggOf('m')} from m join devices d on d.id = m.device_id`,
       )}
       returning ${FLEET_KEYS}, ${AGG_COLUMNS}
     ), fh as (
       insert into fleet_rollup_1h as t (${FLEET_KEYS}, ${AGG_COLUMNS}) ${up('fm', FLEET_KEYS, '1 hour')}
       on conflict (${FLEET_KEYS}) ${MERGE('t')}
     ), fd as (
       insert into fleet_rollup_1d as t (${FLEET_KEYS}, ${AGG_COLUMNS}) ${up('fm', FLEET_KEYS, '1 day')}
       on conflict (${FLEET_KEYS}) ${MERGE('t')}
     )
     select 1`,
    [fromUs, toUs],
  );
}

export interface DirtyBatch {
  deviceIds: number[];
  deviceHoursUs: number[];
  deviceVersions: number[];
  tenantIds: number[];
  tenantHoursUs: number[];
  tenantVersions: number[];
}

/**
 * Late-data marks below the watermark in the first `hours` distinct hours: the device
 * hours and the fleet hours (of status changes and deletions) to recompute.
 */
export async function dirtyBatch(tx: Db, doneUs: number, hours: number): Promise<DirtyBatch> {
  const rows = await tx.query<{ kind: string; id: number; hour_us: number; version: number }>(
    'rollups.dirty_batch',
    `with hours as (
       select hour from (select hour from rollup_dirty union select hour from fleet_rollup_dirty) h
        where hour < ${TS_IN('$1::int8')} order by hour limit $2::int
     )
     select 'device' as kind, x.device_id as id, ${TS_OUT('x.hour')} as hour_us, x.version
       from rollup_dirty x where x.hour in (select hour from hours)
     union all
     select 'fleet', x.tenant_id, ${TS_OUT('x.hour')}, x.version
       from fleet_rollup_dirty x where x.hour in (select hour from hours)`,
    [doneUs, hours],
  );
  const b: DirtyBatch = { deviceIds: [], deviceHoursUs: [], deviceVersions: [], tenantIds: [], tenantHoursUs: [], tenantVersions: [] };
  for (const r of rows) {
    if (r.kind === 'device') {
      b.deviceIds.push(r.id);
      b.deviceHoursUs.push(r.hour_us);
      b.deviceVersions.push(r.version);
    } else {
      b.tenantIds.push(r.id);
      b.tenantHoursUs.push(r.hour_us);
      b.tenantVersions.push(r.version);
    }
  }
  return b;
}

const DEVICE_HOURS = `select device_id, ${TS_IN('h')} as hour from unnest($1::int8[], $2::int8[]) as k(device_id, h)`;

/**
 * Recomputes the device rollups of the marked (device, hour) pairs below `done`: 1m from
 * the readings, 1h from 1m, 1d from 1h (replacing what is stored).
 */
export async function recomputeDevices(tx: Db, deviceIds: number[], hoursUs: number[], doneUs: number) {
  const params = [deviceIds, hoursUs, doneUs];
  await tx.query(
    'rollups.recompute_1m',
    `with k as (${DEVICE_HOURS}), src as (
       select r.device_id, rm.id as metric_id, date_bin('1 minute', r.ts, ${EPOCH}) as bucket, ${RAW_PARTIAL('r.ts', 'u.v')}
         from k join ${RAW_VALUES} on r.device_id = k.device_id
        where r.ts >= k.hour and r.ts < least(k.hour + interval '1 hour', ${TS_IN('$3::int8')}) and u.v is not null
     )
     insert into rollup_1m (${KEYS}, ${AGG_COLUMNS}) ${combine(KEYS, 'select * from src')}
     on conflict (${KEYS}) ${REPLACE}`,
    params,
  );
  await tx.query(
    'rollups.recompute_1h',
    `with k as (${DEVICE_HOURS})
     insert into rollup_1h (${KEYS}, ${AGG_COLUMNS}) ${combine(
       KEYS,
       `select x.device_id, x.metric_id, k.hour as bucket, ${aggOf('x')}
          from k join rollup_1m x on x.device_id = k.device_id and x.bucket >= k.hour and x.bucket < k.hour + interval '1 hour'`,
     )}
     on conflict (${KEYS}) ${REPLACE}`,
    params.slice(0, 2),
  );
  await tx.query(
    'rollups.recompute_1d',
    `with k as (select distinct device_id, date_bin('1 day', hour, ${EPOCH}) as day from (${DEVICE_HOURS}) h)
     insert into rollup_1d (${KEYS}, ${AGG_COLUMNS}) ${combine(
       KEYS,
       `select x.device_id, x.metric_id, k.day as bucket, ${aggOf('x')}
          from k join rollup_1h x on x.device_id = k.device_id and x.bucket >= k.day and x.bucket < k.day + interval '1 day'`,
     )}
     on conflict (${KEYS}) ${REPLACE}`,
    params.slice(0, 2),
  );
}

const TENANT_SPANS = (span: string) =>
  `select tenant_id, date_bin('${span}', ${TS_IN('h')}, ${EPOCH}) as s from unnest($1::int8[], $2::int8[]) as k(tenant_id, h)
   union
   select d.tenant_id, date_bin('${span}', ${TS_IN('h')}, ${EPOCH}) from unnest($3::int8[], $4::int8[]) as k(device_id, h)
     join devices d on d.id = k.device_id`;

/**
 * Recomputes the fleet rows of the batch's hours (and their days) from the device
 * rollups, grouping devices by their current status: delete, then insert, since a status
 * may have no devices left.
 */
export async function recomputeFleet(tx: Db, b: DirtyBatch) {
  const levels = [
    ['1m', '1 hour', 'rollup_1m', 'fleet_rollup_1m'],
    ['1h', '1 hour', 'rollup_1h', 'fleet_rollup_1h'],
    ['1d', '1 day', 'rollup_1d', 'fleet_rollup_1d'],
  ] as const;
  const params = [b.tenantIds, b.tenantHoursUs, b.deviceIds, b.deviceHoursUs];
  for (const [name, span, device, fleet] of levels) {
    await tx.query(
      `rollups.clear_fleet_${name}`,
      `with k as (${TENANT_SPANS(span)})
       delete from ${fleet} f using k where f.tenant_id = k.tenant_id and f.bucket >= k.s and f.bucket < k.s + interval '${span}'`,
      params,
    );
    await tx.query(
      `rollups.recompute_fleet_${name}`,
      `with k as (${TENANT_SPANS(span)})
       insert into ${fleet} (${FLEET_KEYS}, ${AGG_COLUMNS}) ${combine(
         FLEET_KEYS,
         `select d.tenant_id, x.metric_id, x.bucket, d.status, ${aggOf('x')}
            from k join devices d on d.tenant_id = k.tenant_id
            join ${device} x on x.device_id = d.id and x.bucket >= k.s and x.bucket < k.s + interval '${span}'`,
       )}`,
      params,
    );
  }
}

/** Removes the marks that were read, unless a writer touched them since (version changed). */
export async function clearDirty(tx: Db, b: DirtyBatch) {
  await tx.query(
    'rollups.clear_dirty',
    `with k as (select * from unnest($1::int8[], $2::int8[], $3::int8[]) as k(device_id, h, version)), f as (
       delete from fleet_rollup_dirty x using unnest($4::int8[], $5::int8[], $6::int8[]) as j(tenant_id, h, version)
        where x.tenant_id = j.tenant_id and x.hour = ${TS_IN('j.h')} and x.version = j.version
     )
     delete from rollup_dirty x using k where x.device_id = k.device_id and x.hour = ${TS_IN('k.h')} and x.version = k.version`,
    [b.deviceIds, b.deviceHoursUs, b.deviceVersions, b.tenantIds, b.tenantHoursUs, b.tenantVersions],
  );
}
