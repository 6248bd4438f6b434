import type { Database } from '../infra/db.ts';
import { ensurePartitionsBetween } from '../infra/partitions.ts';
import { METRIC_PATTERN } from '../http/schemas.ts';
import { upsertTenant } from '../modules/keys/repository.ts';
import { MetricSets } from '../modules/ingest/metric-sets.ts';
import { LATEST_FORWARD, MARK_DIRTY, namesLiteral, TS_IN, TS_OUT } from '../modules/readings/repository.ts';
import { refreshRollups } from '../modules/rollups/refresh.ts';

export interface SeedOptions {
  tenant: string;
  devices: number;
  days: number;
  intervalS: number;
  metrics: string[];
  /** End of the data (exclusive), epoch µs; default: now, rounded down to the interval. */
  endUs?: number;
  /** Parallel insert streams (one connection each). */
  parallel?: number;
  /** Build the rollups afterwards (default true), up to now minus `rollupLagMs` (ROLLUP_LAG_MS). */
  rollups?: boolean;
  rollupLagMs?: number;
}

export interface SeedProgress {
  phase: 'devices' | 'readings' | 'latest' | 'analyze' | 'rollups' | 'done';
  done: number;
  total: number;
  rows: number;
}

export const deviceName = (i: number) => `sensor-${i}`;

// a daily cycle per metric, phase-shifted per device, plus noise: plausible telemetry
const value = (metric: string) => `case ${metric}
    when 'temperature' then 21 + 4 * sin(extract(epoch from ts) / 13750.99 + d.id) + (random() - 0.5)
    when 'humidity'    then 50 + 15 * sin(extract(epoch from ts) / 13750.99 + d.id * 0.7) + (random() - 0.5) * 4
    when 'pressure'    then 1013 + 6 * sin(extract(epoch from ts) / 27501.97 + d.id) + (random() - 0.5) * 0.4
    else 50 + 10 * sin(extract(epoch from ts) / 13750.99 + d.id) + (random() - 0.5) * 2 end`;

/**
 * `latest` of a tenant's devices ($1) from each device's newest reading at or after $2
 * (epoch µs, fillLatestParams); `latest` only moves forward. The seed fills it so; the
 * bench restores it so after its own writes (bench/run.ts).
 */
export const FILL_LATEST = `insert into latest as l (device_id, names, tss, vals, ts, ts_min)
     select r.device_id, m.names, array_fill(${TS_OUT('r.ts')}, array[cardinality(m.names)]), r.vals, r.ts, r.ts
       from (select distinct on (r.device_id) r.device_id, r.ts, r.metric_set, r.vals
               from readings r join devices d on d.id = r.device_id
              where d.tenant_id = $1::bigint and r.ts >= ${TS_IN('$2::int8')}
              order by r.device_id, r.ts desc) r
       join metric_sets m on m.id = r.metric_set
      order by r.device_id
     ${LATEST_FORWARD}`;
/** FILL_LATEST's parameters for data seeded over [startUs, endUs): its last day is searched. */
export const fillLatestParams = (tenantId: number | string, startUs: number, endUs: number) => [tenantId, Math.max(startUs, endUs - 86_400e6)];

/**
 * Generates a fleet's history inside PostgreSQL (INSERT … SELECT over generate_series: no
 * rows cross the network), one UTC day at a time in parallel streams, then fills
 * `latest` and analyzes. 1,000 devices × 30 days × 5 min × 3 metrics ≈ 26M values.
 */
export async function seed(database: Database, opts: SeedOptions, progress: (p: SeedProgress) => void = () => {}) {
  const db = database.ingest;
  const step = opts.intervalS * 1e6;
  const endUs = opts.endUs ?? Math.floor((Date.now() * 1000) / step) * step;
  const startUs = endUs - opts.days * 86_400e6;
  const tenantId = await upsertTenant(db, opts.tenant);

  progress({ phase: 'devices', done: 0, total: opts.devices, rows: 0 });
  await db.query(
    'seed.devices',
    `insert into devices (tenant_id, external_id, status)
     select $1::bigint, 'sensor-' || g, case when g % 10 = 0 then 'inactive' else 'active' end
       from generate_series(1, $2::int) g
     on conflict (tenant_id, external_id) do nothing`,
    [tenantId, opts.devices],
  );
  const names = [...new Set(opts.metrics)].sort();
  const bad = names.filter((n) => !new RegExp(METRIC_PATTERN).test(n));
  if (bad.length || !names.length) throw new Error(`metric names must match ${METRIC_PATTERN}: ${bad.join(', ')}`);
  const setLiteral = namesLiteral(names);
  const setId = (await db.tx((tx) => new MetricSets().resolve(tx, [setLiteral]))).get(setLiteral)!;
  const valsSql = `array[${names.map((_, i) => value(`$${5 + i}::text`)).join(', ')}]`;
  await ensurePartitionsBetween(db, startUs, endUs - 1);

  // one task per UTC day; each covers [dayStart, dayEnd) ∩ [start, end)
  const tasks: [number, number][] = [];
  for (let from = startUs; from < endUs; from += 86_400e6) tasks.push([from, Math.min(from + 86_400e6, endUs)]);
  let done = 0;
  let rows = 0;
  progress({ phase: 'readings', done, total: tasks.length, rows });
  const worker = async () => {
    for (let task = tasks.shift(); task; task = tasks.shift()) {
      const res = await db.query<{ n: number }>(
        'seed.readings',
        `with ins as (
           insert into readings (device_id, ts, metric_set, vals)
           select d.id, ts, ${setId}, ${valsSql}
             from devices d
             cross join generate_series(timestamptz 'epoch' + $2::int8 * interval '1 microsecond',
                                        timestamptz 'epoch' + ($3::int8 - 1) * interval '1 microsecond',
                                        $4::int8 * interval '1 microsecond') ts
            where d.tenant_id = $1::bigint
            order by d.id, ts
           on conflict (device_id, ts) do nothing
           returning 1)
         select count(*)::int as n from ins`,
        [tenantId, task[0], task[1], step, ...names],
      );
      rows += res[0]!.n * names.length;
      progress({ phase: 'readings', done: ++done, total: done + tasks.length, rows });
    }
  };
  await Promise.all(Array.from({ length: opts.parallel ?? 2 }, worker));
  // rows written straight into readings: mark their hours late if rollups already cover them
  await db.query(
    'seed.rollup_dirty',
    `insert into rollup_dirty (device_id, hour)
     select d.id, h
       from devices d
       cross join generate_series(date_bin('1 hour', timestamptz 'epoch' + $2::int8 * interval '1 microsecond', timestamptz 'epoch'),
                                  timestamptz 'epoch' + ($3::int8 - 1) * interval '1 microsecond', interval '1 hour') h
      where d.tenant_id = $1::bigint and h < (select pending from rollup_watermark)
     ${MARK_DIRTY}`,
    [tenantId, startUs, endUs],
  );

  progress({ phase: 'latest', done: 0, total: 1, rows });
  await db.query('seed.latest', FILL_LATEST, fillLatestParams(tenantId, startUs, endUs));
  progress({ phase: 'analyze', done: 0, total: 1, rows });
  await db.query('seed.analyze', 'analyze devices, metric_sets, latest, readings');

  // benchmarks start from a realistic state: rollups caught up (a day per transaction)
  const nowUs = Date.now() * 1000;
  const rollupEndUs = Math.max(endUs, nowUs);
  for (let caughtUp = opts.rollups === false; !caughtUp; ) {
    const r = await refreshRollups(db, { nowUs: rollupEndUs, lagMs: opts.rollupLagMs ?? 60_000, maxChunks: 1, settleMs: 5000 });
    caughtUp = r.caughtUp;
    const doneUs = r.doneUs ?? startUs;
    progress({ phase: 'rollups', done: Math.round(Math.max(0, doneUs - startUs) / 86_400e6), total: Math.ceil((rollupEndUs - startUs) / 86_400e6), rows });
  }
  if (opts.rollups !== false) await db.query('seed.vacuum_rollups', 'vacuum analyze rollup_1m, rollup_1h, rollup_1d, fleet_rollup_1m, fleet_rollup_1h, fleet_rollup_1d');
  progress({ phase: 'done', done: 1, total: 1, rows });
  return { tenantId, rows, startUs, endUs };
}
