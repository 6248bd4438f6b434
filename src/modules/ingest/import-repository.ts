import type { Db } from '../../infra/db.ts';
import { TS_IN } from '../readings/repository.ts';

/** The statements of a streaming import, all on the import's own transaction. */

export async function createStaging(tx: Db) {
  await tx.query(
    'import.create_staging',
    `create temp table import_rows (seq int8, device text, ts timestamptz, names text[], vals float8[]) on commit drop`,
  );
}

export const COPY_STAGING = 'copy import_rows (seq, device, ts, names, vals) from stdin';

export async function createMissingDevices(tx: Db, tenantId: number) {
  await tx.query(
    'import.create_devices',
    `insert into devices (tenant_id, external_id)
     select $1::bigint, device from (select distinct device from import_rows) s
      where not exists (select 1 from devices d where d.tenant_id = $1::bigint and d.external_id = s.device)
      order by device
     on conflict (tenant_id, external_id) do nothing`,
    [tenantId],
  );
}

export async function unknownDevices(tx: Db, tenantId: number): Promise<string[]> {
  const rows = await tx.query<{ device: string }>(
    'import.unknown_devices',
    `select distinct device from import_rows s
      where not exists (select 1 from devices d where d.tenant_id = $1::bigint and d.external_id = s.device)
      order by device limit 100`,
    [tenantId],
  );
  return rows.map((r) => r.device);
}

export async function createMissingMetricSets(tx: Db) {
  await tx.query(
    'import.create_metric_sets',
    `insert into metric_sets (names)
     select names from (select distinct names from import_rows) s
      where not exists (select 1 from metric_sets m where m.names = s.names)
      order by names
     on conflict (names) do nothing`,
  );
}

/**
 * Moves staged rows into readings (merging with stored ones), and marks the (device, hour)
 * pairs below the rollup watermark's target for recomputation (src/modules/rollups).
 */
const MOVE = (source: string) => `with moved as (
       insert into readings as r (device_id, ts, metric_set, vals)
       select d.id, s.ts, m.id, s.vals
         from ${source} s
         join devices d on d.tenant_id = $1::bigint and d.external_id = s.device
         join metric_sets m on m.names = s.names
       on conflict (device_id, ts) do update
         set (metric_set, vals) = (select * from pulse_merge_reading(r.metric_set, r.vals, excluded.metric_set, excluded.vals))
     ), late as (
       insert into rollup_dirty (device_id, hour)
       select distinct d.id, date_bin('1 hour', s.ts, timestamptz 'epoch')
         from ${source} s
         join devices d on d.tenant_id = $1::bigint and d.external_id = s.device
        where s.ts < (select pending from rollup_watermark)
        order by 1, 2
       on conflict (device_id, hour) do update set version = rollup_dirty.version + 1
     )
     select 1`;

export async function moveAll(tx: Db, tenantId: number) {
  await tx.query('import.move_rows', MOVE('import_rows'), [tenantId]);
}

/** Ranks repeated (device, ts) pairs by arrival; returns the highest rank. */
export async function rankRepeats(tx: Db): Promise<number> {
  await tx.query(
    'import.rank_repeats',
    `create temp table import_ranked on commit drop as
     select *, row_number() over (partition by device, ts order by seq) as rank from import_rows`,
  );
  const rows = await tx.query<{ max: number }>('import.max_rank', 'select coalesce(max(rank), 0)::int as max from import_ranked');
  return rows[0]!.max;
}

export async function moveRank(tx: Db, tenantId: number, rank: number) {
  await tx.query('import.move_rank', MOVE('(select * from import_ranked where rank = $2::int8)'), [tenantId, rank]);
}

export async function upsertLatestByName(tx: Db, tenantId: number, devices: string[], metrics: string[], tsUs: number[], values: number[]) {
  await tx.query(
    'import.upsert_latest',
    `insert into latest (device_id, metric, ts, value)
     select d.id, u.m, ${TS_IN('u.t')}, u.v
       from unnest($2::text[], $3::text[], $4::int8[], $5::float8[]) as u(device, m, t, v)
       join devices d on d.tenant_id = $1::bigint and d.external_id = u.device
      order by d.id, u.m
     on conflict (device_id, metric) do update set ts = excluded.ts, value = excluded.value
       where latest.ts <= excluded.ts`,
    [tenantId, devices, metrics, tsUs, values],
  );
}
