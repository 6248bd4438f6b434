import type { Db } from '../../infra/db.ts';
import { JOBS_DUE_CHANNEL } from '../../jobs/due.ts';
import { TS_IN, TS_OUT } from '../readings/repository.ts';

export type SessionStatus = 'open' | 'completing' | 'completed' | 'failed';

export interface SessionRow {
  id: string;
  device: string;
  status: SessionStatus;
  started_us: number;
  completed_us: number | null;
  summary: Record<string, unknown> | null;
  stale: boolean;
  error: string | null;
}

const COLUMNS = `s.id::text, d.external_id as device, s.status, ${TS_OUT('s.started_at')} as started_us,
  ${TS_OUT('s.completed_at')} as completed_us, s.summary, s.stale, s.error`;

/** Opens a session of the tenant's device; undefined when the device does not exist or already has an open session. */
export async function insertSession(
  db: Db,
  tenantId: number,
  device: string,
  startedUs: number | null,
  notifyEmail: string | null,
): Promise<SessionRow | undefined> {
  const rows = await db.query<SessionRow>(
    'sessions.insert',
    `with s as (
       insert into sessions (tenant_id, device_id, started_at, notify_email)
       select d.tenant_id, d.id, coalesce(${TS_IN('$3::int8')}, now()), $4::text
         from devices d where d.tenant_id = $1::bigint and d.external_id = $2::text
       on conflict (device_id) where status = 'open' do nothing
       returning *
     )
     select ${COLUMNS} from s join devices d on d.id = s.device_id`,
    [tenantId, device, startedUs, notifyEmail],
  );
  return rows[0];
}

/** The open session of a device (after a refused start: which one blocks it). */
export async function findOpenSession(db: Db, tenantId: number, device: string): Promise<{ id: string } | undefined> {
  const rows = await db.query<{ id: string }>(
    'sessions.find_open',
    `select s.id::text from devices d join sessions s on s.device_id = d.id and s.status = 'open'
      where d.tenant_id = $1::bigint and d.external_id = $2::text`,
    [tenantId, device],
  );
  return rows[0];
}

export async function deviceExists(db: Db, tenantId: number, device: string): Promise<boolean> {
  const rows = await db.query('sessions.device_exists', `select 1 from devices where tenant_id = $1::bigint and external_id = $2::text`, [
    tenantId,
    device,
  ]);
  return rows.length > 0;
}

export async function findSessions(db: Db, tenantIds: number[], ids: string[]): Promise<(SessionRow & { tenant_id: number })[]> {
  return db.query<SessionRow & { tenant_id: number }>(
    'sessions.find_many',
    `select s.tenant_id, ${COLUMNS}
       from unnest($1::int8[], $2::uuid[]) as k(tenant_id, id)
       join sessions s on s.id = k.id and s.tenant_id = k.tenant_id
       join devices d on d.id = s.device_id`,
    [tenantIds, ids],
  );
}

/** One keyset page of a device's sessions, newest first; `after` is the (started_us, id) of the previous page's last row. */
export async function listSessions(
  db: Db,
  tenantId: number,
  device: string,
  after: readonly [number, string] | null,
  limit: number,
): Promise<SessionRow[]> {
  return db.query<SessionRow>(
    'sessions.list',
    `select ${COLUMNS}
       from devices d join sessions s on s.device_id = d.id
      where d.tenant_id = $1::bigint and d.external_id = $2::text
        and ($3::int8 is null or (s.started_at, s.id) < (${TS_IN('$3::int8')}, $4::uuid))
      order by s.started_at desc, s.id desc
      limit $5::int`,
    [tenantId, device, after?.[0] ?? null, after?.[1] ?? null, limit],
  );
}

export interface CompletionTasks {
  /** Per-session task (payload `{ session_id }`, job key `<task>:<id>`): without a window, a flush that moved one session. */
  single: string;
  /** Batch task (payload `[{ session_ids }, …]`, one element per flush): every flush of a window; without one, a flush that moved several. */
  batch: string;
  maxAttempts: number;
  /** Flushes within a window of this many ms share one batch job; 0: a job per flush. */
  windowMs: number;
  /** Key prefix of the window jobs, one per process: processes never wait on each other's job row. */
  windowKey: string;
}

/** A window's batch job is due this long after the window ends (see completeSessions). */
const WINDOW_GRACE = "interval '20 milliseconds'";

/**
 * One completion flush in one statement (atomic on its own: no BEGIN/COMMIT round trips):
 * moves the asked-for open sessions to 'completing' (completed now), queues their
 * summaries (one job for all, see below), and returns every asked-for session of its tenant — the moved ones
 * as RETURNING gives them (the other parts of a statement do not see its CTE's update),
 * the others as they are. Sessions already completing, completed or failed are left as
 * they are and get no job (idempotent).
 *
 * Every flush that moved a session joins its window's batch job (tasks.windowMs > 0): flushes
 * within one window of the clock append their sessions to one graphile-worker batch job
 * (an array payload, one element per flush), due at the window's end, so the worker runs
 * one job per window instead of one per flush. The window's first flush creates the job
 * and notifies JOBS_DUE_CHANNEL of when it is due. The window is read from the clock right
 * before the job is added and the job is due WINDOW_GRACE after the window ends, so a flush
 * finds its window's job still waiting, never taken by a worker — should a worker have taken
 * it all the same, graphile-worker adds a new job for the key (and takes the running one's
 * remaining retries: it is then not retried), and should it be taken between add_jobs'
 * own statements, which adds nothing, the flush adds a job of its own. Without a window,
 * a flush that moved several queues a batch job of its own, and one that moved a single
 * session queues the per-session task, keyed as late.ts keys it (a late-data re-summary
 * then merges with it instead of running a second time).
 *
 * A row returned still 'open' was completed by a concurrent flush (another process) that
 * committed after this statement's snapshot: the caller must read it again.
 */
export async function completeSessions(
  db: Db,
  tenantIds: number[],
  ids: string[],
  tasks: CompletionTasks,
): Promise<(SessionRow & { tenant_id: number })[]> {
  return db.query<SessionRow & { tenant_id: number }>(
    'sessions.complete',
    `with asked as (
       select distinct k.tenant_id, k.id from unnest($1::int8[], $2::uuid[]) as k(tenant_id, id)
     ),
     moved as (
       update sessions s set status = 'completing', completed_at = greatest(now(), s.started_at)
         from asked k
        where s.id = k.id and s.tenant_id = k.tenant_id and s.status = 'open'
       returning s.*
     ),
     moved_n as (select count(*)::int as n from moved),
     single_job as (
       select count(*)::int as n from graphile_worker.add_jobs(array(
         select row($3::text, json_build_object('session_id', m.id), null, null, $5::smallint, $3::text || ':' || m.id, null, null)::graphile_worker.job_spec
           from moved m))
        where (select n from moved_n) = 1 and $7::int = 0
     ),
     batch_spec as (
       select json_build_array(json_build_object('session_ids', array(select m.id from moved m order by m.id))) as payload,
              floor(extract(epoch from clock_timestamp()) * 1000 / nullif($7::int, 0))::int8 as win
        where (select n from moved_n) > (case when $7::int > 0 then 0 else 1 end)
     ),
     batch_keyed as (
       -- the window's job: the first flush of the window adds it, the others append to its payload
       select j.revision, floor(extract(epoch from j.run_at) * 1000)::int8 as due_ms
         from batch_spec b, graphile_worker.add_jobs(array[
           row($4::text, b.payload, null, to_timestamp((b.win + 1) * $7::int / 1000.0) + ${WINDOW_GRACE},
               $5::smallint, $6::text || ':' || b.win, null, null)::graphile_worker.job_spec], true) j
        where b.win is not null
     ),
     batch_job as (
       -- no window, or the window's job added nothing (taken by a worker meanwhile): a job of its own
       select count(*)::int as n from batch_spec b, graphile_worker.add_jobs(array[
         row($4::text, b.payload, null, null, $5::smallint, null, null, null)::graphile_worker.job_spec])
        where not exists (select 1 from batch_keyed)
     ),
     woken as (
       select count(*)::int as n
         from (select pg_notify('${JOBS_DUE_CHANNEL}', k.due_ms::text) from batch_keyed k where k.revision = 0) x
     )
     select s.tenant_id, ${COLUMNS}
       from moved s join devices d on d.id = s.device_id
      -- a one-time filter: makes the job CTEs run, whatever the number of rows
      where (select n from single_job) + (select n from batch_job) + (select n from woken) >= 0
     union all
     select s.tenant_id, ${COLUMNS}
       from asked k
       join sessions s on s.id = k.id and s.tenant_id = k.tenant_id
       join devices d on d.id = s.device_id
      -- not in (ids are never null): a hashed subplan; not exists was a nested loop over moved (n²)
      where s.id not in (select m.id from moved m)`,
    [tenantIds, ids, tasks.single, tasks.batch, tasks.maxAttempts, tasks.windowKey, tasks.windowMs],
  );
}

/**
 * Per-session summary jobs (keyed as late.ts keys them, so a queued re-summary merges)
 * for those of `ids` still 'completing', in one statement; returns how many were queued.
 */
export async function requeueSummaries(db: Db, ids: string[], task: string, maxAttempts: number): Promise<number> {
  const rows = await db.query<{ n: number }>(
    'sessions.requeue_summaries',
    `with pending as (select s.id from sessions s where s.id = any($3::uuid[]) and s.status = 'completing')
     select count(*)::int as n from graphile_worker.add_jobs(array(
       select row($1::text, json_build_object('session_id', p.id), null, null, $2::smallint, $1::text || ':' || p.id, null, null)::graphile_worker.job_spec
         from pending p))
      where exists (select 1 from pending)`,
    [task, maxAttempts, ids],
  );
  return rows[0]!.n;
}

/** A session's readings in [started_at, completed_at], as summarizeSessions reads them. */
interface SummaryRow {
  id: string;
  revision: number;
  duration_s: number;
  /** null: a session without readings (one row for it, from the outer join). */
  ts_us: number | null;
  metric_set: number | null;
  vals: (number | null)[] | null;
}

export interface MetricSummary {
  count: number;
  min: number;
  max: number;
  avg: number;
  first: number;
  last: number;
}
export interface SessionSummary {
  duration_s: number;
  readings: number;
  metrics: Record<string, MetricSummary>;
}

/**
 * A session's summary from its rows: per metric over its non-null values count, min, max,
 * avg, first and last (by ts; a device has one reading per ts), plus the readings (rows)
 * and the duration. Metric sets may change mid-session: values are matched by name.
 */
export function summarize(rows: SummaryRow[], names: (metricSet: number) => string[]): SessionSummary {
  const acc = new Map<string, { n: number; min: number; max: number; sum: number; firstTs: number; first: number; lastTs: number; last: number }>();
  let readings = 0;
  for (const r of rows) {
    if (r.ts_us === null || r.vals === null) continue;
    readings++;
    const set = names(r.metric_set!);
    for (let i = 0; i < r.vals.length; i++) {
      const v = r.vals[i];
      if (v === null || v === undefined) continue;
      const name = set[i]!;
      const a = acc.get(name);
      if (!a) {
        acc.set(name, { n: 1, min: v, max: v, sum: v, firstTs: r.ts_us, first: v, lastTs: r.ts_us, last: v });
        continue;
      }
      a.n++;
      a.sum += v;
      if (v < a.min) a.min = v;
      if (v > a.max) a.max = v;
      if (r.ts_us < a.firstTs) (a.firstTs = r.ts_us), (a.first = v);
      if (r.ts_us > a.lastTs) (a.lastTs = r.ts_us), (a.last = v);
    }
  }
  const metrics: Record<string, MetricSummary> = {};
  for (const [name, a] of acc) metrics[name] = { count: a.n, min: a.min, max: a.max, avg: a.sum / a.n, first: a.first, last: a.last };
  return { duration_s: rows[0]?.duration_s ?? 0, readings, metrics };
}

const MAX_CACHED_SETS = 10_000;
/** Metric sets never change once created: their names are remembered by id. */
const setNames = new Map<number, string[]>();

export interface AnnouncedSummary extends SessionRow {
  tenant_id: number;
  notify_email: string | null;
}

/**
 * Computes and stores the summaries of sessions (run it in the transaction that announces
 * them); sessions gone or still open are skipped. Two statements: the first reads each
 * session's revision and readings in one snapshot (per session one index range scan of its
 * device: a lateral kept apart by offset 0, whatever the statistics say — as a join, a
 * hash join would read every readings partition); the summaries are computed here
 * (summarize), and the second stores them. The database is what many workers share: with
 * the aggregation in SQL (per session, inside a lateral) its statements took 4.8 ms per
 * 22 sessions, now 2.5 ms, and its CPU per completion fell by a quarter (the worker's
 * rose; on the 2-core bench machine, where both share the cores, completions/s did not move).
 * A summary is stale when a late reading bumped its session's revision after the first
 * statement's snapshot: the second's row lock then sees the newer revision. Rows are
 * locked in id order, as late marks lock them: the two wait for each other, never deadlock.
 *
 * Returns only the sessions to announce: those getting their FIRST summary (a recompute
 * after late readings is not news) whose tenant has a session.completed webhook or that
 * asked for an e-mail.
 */
export async function summarizeSessions(tx: Db, ids: string[]): Promise<AnnouncedSummary[]> {
  const rows = await tx.query<SummaryRow>(
    'sessions.summary_rows',
    `select s.id::text, s.revision, extract(epoch from s.completed_at - s.started_at)::float8 as duration_s,
            ${TS_OUT('r.ts')} as ts_us, r.metric_set, r.vals
       from sessions s
       left join lateral (
         select r.ts, r.metric_set, r.vals from readings r
          where r.device_id = s.device_id and r.ts between s.started_at and s.completed_at offset 0
       ) r on true
      where s.id = any($1::uuid[]) and s.completed_at is not null`,
    [ids],
  );
  if (!rows.length) return [];
  const unknownSets = [...new Set(rows.map((r) => r.metric_set).filter((m): m is number => m !== null && !setNames.has(m)))];
  if (unknownSets.length) {
    const sets = await tx.query<{ id: number; names: string[] }>('sessions.metric_set_names', 'select id, names from metric_sets where id = any($1::int4[])', [unknownSets]);
    if (setNames.size + sets.length > MAX_CACHED_SETS) setNames.clear();
    for (const m of sets) setNames.set(m.id, m.names);
  }
  const bySession = new Map<string, SummaryRow[]>();
  for (const r of rows) {
    const list = bySession.get(r.id);
    if (list) list.push(r);
    else bySession.set(r.id, [r]);
  }
  const computed = [...bySession].map(([id, list]) => ({ id, revision: list[0]!.revision, summary: summarize(list, (m) => setNames.get(m)!) }));
  return tx.query<AnnouncedSummary>(
    'sessions.summarize',
    `with computed as (
       select c.id, c.revision, c.summary from jsonb_to_recordset($1::jsonb) as c(id uuid, revision int4, summary jsonb)
     ),
     -- each computed summary with its locked row: the update then joins one list by the primary
     -- key (joining computed and prev there was planned as a nested loop over prev: n² rows)
     prev as materialized (
       select s.id, s.summarized_at, c.revision, c.summary
         from computed c join sessions s on s.id = c.id
        order by s.id for update of s
     ),
     stored as (
       update sessions s set status = 'completed', summary = p.summary, stale = (s.revision <> p.revision),
              error = null, summarized_at = now()
         from prev p
        where s.id = p.id and s.status in ('completing', 'completed', 'failed')
       returning s.*, p.summarized_at is null as first
     )
     select s.tenant_id, s.notify_email, ${COLUMNS}
       from stored s join devices d on d.id = s.device_id
      where s.first
        and (s.notify_email is not null
             or exists (select 1 from webhooks w where w.tenant_id = s.tenant_id and 'session.completed' = any(w.events)))`,
    [JSON.stringify(computed)],
  );
}

export async function markFailed(db: Db, id: string, error: string): Promise<void> {
  await db.query(
    'sessions.mark_failed',
    `update sessions set status = 'failed', error = $2::text where id = $1::uuid and status = 'completing'`,
    [id, error.slice(0, 1000)],
  );
}
