import assert from 'node:assert/strict';
import type pg from 'pg';

export type Summary = { duration_s: number; readings: number; metrics: Record<string, Record<string, number>> };

/**
 * A session's summary as plain SQL computes it (window functions, not the job's grouping),
 * independently of the job's query: per metric over the non-null values in the window.
 */
export async function rawSummary(pool: pg.Pool, id: string): Promise<Summary> {
  const { rows } = await pool.query<{ metric: string; count: number; min: number; max: number; avg: number; first: number; last: number }>(
    `with v as (
       select u.name as metric, u.v, r.ts
         from sessions s
         join readings r on r.device_id = s.device_id and r.ts >= s.started_at and r.ts <= s.completed_at
         join metric_sets m on m.id = r.metric_set, unnest(m.names, r.vals) as u(name, v)
        where s.id = $1 and u.v is not null)
     select distinct metric, count(*) over w::int as count, min(v) over w as min, max(v) over w as max, avg(v) over w as avg,
            first_value(v) over (partition by metric order by ts) as first,
            first_value(v) over (partition by metric order by ts desc) as last
       from v window w as (partition by metric)`,
    [id],
  );
  const counts = await pool.query<{ readings: number; duration_s: number }>(
    `select (select count(*)::int from readings r where r.device_id = s.device_id and r.ts >= s.started_at and r.ts <= s.completed_at) as readings,
            extract(epoch from s.completed_at - s.started_at)::float8 as duration_s
       from sessions s where s.id = $1`,
    [id],
  );
  return { ...counts.rows[0]!, metrics: Object.fromEntries(rows.map(({ metric, ...m }) => [metric, m])) };
}

/** The summary equals the raw computation: exactly, but for avg (float summation order) and duration. */
export function assertSummaryEqual(actual: Summary, expected: Summary, what = 'summary') {
  assert.equal(actual.readings, expected.readings, `${what}: readings`);
  assert.ok(Math.abs(actual.duration_s - expected.duration_s) < 1e-6, `${what}: duration_s`);
  assert.deepEqual(Object.keys(actual.metrics).sort(), Object.keys(expected.metrics).sort(), `${what}: metrics`);
  for (const [name, m] of Object.entries(expected.metrics)) {
    const a = actual.metrics[name]!;
    for (const k of ['count', 'min', 'max', 'first', 'last'] as const) assert.equal(a[k], m[k], `${what}: ${name}.${k}`);
    assert.ok(Math.abs(a.avg! - m.avg!) < 1e-9, `${what}: ${name}.avg`);
  }
}
