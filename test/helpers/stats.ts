import assert from 'node:assert/strict';
import type pg from 'pg';

export interface StatsBucket {
  ts: string;
  count: number;
  min: number;
  max: number;
  avg: number;
  sum: number;
  first: number;
  last: number;
}

const INTERVAL = { '1m': '1 minute', '1h': '1 hour', '1d': '1 day' } as const;

/**
 * The reference: one metric aggregated straight from readings with plain SQL (no rollups),
 * for one device (`device`) or a tenant's devices of a status (null: any). first/last tie
 * rule as documented: earliest ts then smallest value; latest ts then largest value.
 */
export async function rawStats(
  pool: pg.Pool,
  q: { tenant: string; device?: string; status?: string | null; metric: string; bucket: keyof typeof INTERVAL; fromMs: number; toMs: number },
): Promise<StatsBucket[]> {
  const { rows } = await pool.query(
    `select extract(epoch from date_bin($5::interval, r.ts, timestamptz 'epoch')) * 1000 as ms,
            count(*)::int as count, sum(x.v) as sum, min(x.v) as min, max(x.v) as max,
            (array_agg(x.v order by r.ts, x.v))[1] as first, (array_agg(x.v order by r.ts desc, x.v desc))[1] as last
       from readings r
       join devices d on d.id = r.device_id
       join tenants t on t.id = d.tenant_id
       join metric_sets m on m.id = r.metric_set
       cross join lateral (select r.vals[array_position(m.names, $4::text)] as v) x
      where t.name = $1 and ($2::text is null or d.external_id = $2) and ($3::text is null or d.status = $3)
        and x.v is not null
        and r.ts >= to_timestamp($6::float8 / 1000) and r.ts < to_timestamp($7::float8 / 1000)
      group by 1 order by 1`,
    [q.tenant, q.device ?? null, q.status ?? null, q.metric, INTERVAL[q.bucket], q.fromMs, q.toMs],
  );
  return rows.map((r) => ({
    ts: new Date(Number(r.ms)).toISOString(),
    count: r.count,
    min: r.min,
    max: r.max,
    avg: r.sum / r.count,
    sum: r.sum,
    first: r.first,
    last: r.last,
  }));
}

/**
 * The tests write values that are multiples of 1/16 and small, so every sum is exact in
 * float8 whatever the addition order: rollups and the reference must agree exactly, in
 * every field. (With arbitrary doubles, sum and avg could differ in the last bits.)
 */
export function assertSameStats(actual: StatsBucket[], expected: StatsBucket[], what: string) {
  assert.deepEqual(actual, expected, what);
}
