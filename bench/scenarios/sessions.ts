/**
 * The session-completion scenario's data: a tenant of its own (so the fleet and dashboard
 * scenarios never see it) with SESSION_DEVICES[size] devices, each with readings in a window;
 * before every run each device gets one open session over that window, with an id the
 * request generator derives from the request number. After a run, the summary lag
 * (completion → summary stored by the job worker) of the completions it made.
 */
import pg from 'pg';
import { createKey } from '../../src/modules/keys/service.ts';
import type { Database } from '../../src/infra/db.ts';
import { SUMMARIZE_BATCH_TASK, SUMMARIZE_TASK } from '../../src/modules/sessions/task-names.ts';

export const SESSION_TENANT = 'bench-sessions';
const READINGS_PER_SESSION = 10;

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** The session devices (created once per bench database) and their readings (placed again relative to now); returns a key of the tenant. */
export async function prepareSessionData(url: string, database: Database, count: number): Promise<string> {
  const key = (await createKey(database.api, SESSION_TENANT, ['read', 'write'])).key;
  await withClient(url, async (c) => {
    const { rows } = await c.query(`select count(*)::int as n from devices d join tenants t on t.id = d.tenant_id where t.name = $1`, [SESSION_TENANT]);
    if (rows[0].n < count) {
      await c.query(
        `insert into devices (tenant_id, external_id, status)
         select t.id, 'sess-' || n, 'inactive' from tenants t, generate_series(1, $2::int) n where t.name = $1
         on conflict do nothing`,
        [SESSION_TENANT, count],
      );
    }
    const set = await c.query(
      `insert into metric_sets (names) values ('{humidity,pressure,temperature}') on conflict (names) do update set names = excluded.names returning id`,
    );
    // Placed again at every bench start, relative to now: each run's sessions start two hours
    // before it (openSessions) and must hold exactly these readings. Kept from an earlier
    // bench, they would fall out of the windows after an hour, and the summaries measured
    // would be of empty sessions.
    await c.query(`delete from readings r using devices d, tenants t where d.id = r.device_id and t.id = d.tenant_id and t.name = $1`, [SESSION_TENANT]);
    // readings one minute apart, ending an hour ago (in partitions that exist: today or yesterday)
    await c.query(
      `insert into readings (device_id, ts, metric_set, vals)
       select d.id, date_trunc('minute', now()) - interval '1 hour' - k * interval '1 minute', $2::int,
              array[40 + k, 1000 + k, 20 + k / 10.0]::float8[]
         from devices d join tenants t on t.id = d.tenant_id, generate_series(1, $3::int) k
        where t.name = $1`,
      [SESSION_TENANT, set.rows[0].id, READINGS_PER_SESSION],
    );
  });
  return key;
}

/** One open session per device, covering its readings; earlier runs' sessions (and their pending jobs) go. */
export async function openSessions(url: string): Promise<void> {
  await withClient(url, async (c) => {
    await c.query(
      `delete from graphile_worker._private_jobs j using graphile_worker._private_tasks t
        where t.id = j.task_id and t.identifier = any($1::text[]) and j.locked_at is null`,
      [[SUMMARIZE_TASK, SUMMARIZE_BATCH_TASK]],
    );
    await c.query(`delete from sessions where tenant_id = (select id from tenants where name = $1)`, [SESSION_TENANT]);
    await c.query(
      `insert into sessions (id, tenant_id, device_id, started_at)
       select ('00000000-0000-4000-8000-' || lpad(to_hex(substr(d.external_id, 6)::int), 12, '0'))::uuid, d.tenant_id, d.id,
              date_trunc('minute', now()) - interval '2 hours'
         from devices d join tenants t on t.id = d.tenant_id where t.name = $1`,
      [SESSION_TENANT],
    );
    // every run deletes and re-inserts the sessions and completes thousands of them: without
    // a vacuum the dead rows pile up run after run (558k after a few, 133 MB) and the next
    // run reads through them (completions 4,500 -> 3,100/s, summary lag p99 0.03 -> 3 s)
    await c.query('vacuum analyze sessions');
    await c.query('vacuum analyze graphile_worker._private_jobs');
  });
}

/** Waits (bounded) for the run's summaries, then their lag: completion → summary stored, in ms. */
export async function summaryLag(url: string, waitMs = 120_000): Promise<{ completed: number; pending: number; p50: number; p99: number; max: number }> {
  return withClient(url, async (c) => {
    const tenant = `(select id from tenants where name = '${SESSION_TENANT}')`;
    const deadline = Date.now() + waitMs;
    let pending = 0;
    for (;;) {
      pending = (await c.query(`select count(*)::int as n from sessions where tenant_id = ${tenant} and status = 'completing'`)).rows[0].n;
      if (pending === 0 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const { rows } = await c.query(
      `select count(*)::int as n,
              coalesce(percentile_cont(0.5) within group (order by lag), 0) as p50,
              coalesce(percentile_cont(0.99) within group (order by lag), 0) as p99,
              coalesce(max(lag), 0) as max
         from (select extract(epoch from summarized_at - completed_at) * 1000 as lag
                 from sessions where tenant_id = ${tenant} and summarized_at is not null) s`,
    );
    return { completed: rows[0].n, pending, p50: Number(rows[0].p50), p99: Number(rows[0].p99), max: Number(rows[0].max) };
  });
}
