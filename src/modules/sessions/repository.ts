import type { Db } from '../../infra/db.ts';
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
  /** Per-session task (payload `{ session_id }`, job key `<task>:<id>`): a flush that moved one session. */
  single: string;
  /** Batch task (payload `{ session_ids }`): a flush that moved several. */
  batch: string;
  maxAttempts: number;
}

/**
 * One completion flush in one statement (atomic on its own: no BEGIN/COMMIT round trips):
 * moves the asked-for open sessions to 'completing' (completed now), adds ONE summary job
 * for those it moved, and returns every asked-for session of its tenant — the moved ones
 * as RETURNING gives them (the other parts of a statement do not see its CTE's update),
 * the others as they are. Sessions already completing, completed or failed are left as
 * they are and get no job (idempotent). A flush that moved a single session queues the
 * per-session task, keyed as late.ts keys it: a batch of one gains nothing, and the key
 * lets a late-data re-summary merge with it instead of running a second time.
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
        where (select n from moved_n) = 1
     ),
     batch_job as (
       select count(*)::int as n from graphile_worker.add_jobs(array[
         row($4::text, json_build_object('session_ids', array(select m.id from moved m order by m.id)), null, null, $5::smallint, null, null, null)::graphile_worker.job_spec])
        where (select n from moved_n) > 1
     )
     select s.tenant_id, ${COLUMNS}
       from moved s join devices d on d.id = s.device_id
      -- a one-time filter: makes the job CTEs run, whatever the number of rows
      where (select n from single_job) + (select n from batch_job) >= 0
     union all
     select s.tenant_id, ${COLUMNS}
       from asked k
       join sessions s on s.id = k.id and s.tenant_id = k.tenant_id
       join devices d on d.id = s.device_id
      where not exists (select 1 from moved m where m.id = s.id)`,
    [tenantIds, ids, tasks.single, tasks.batch, tasks.maxAttempts],
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

/**
 * A session's summary from its readings in [started_at, completed_at]: per metric count,
 * min, max, avg, first and last (by ts), plus the readings (rows) and the duration. One
 * scan of the window per session (lateral: an index range scan of its device, whatever
 * the statistics say — a hash join would read every readings partition), aggregated by
 * position in the metric set, then by name (a device may change metric sets mid-session).
 * first/last: the least/greatest [epoch, value] pair, no sort (a device has one reading
 * per ts). `s` is the session row.
 */
const SUMMARY = `jsonb_build_object(
    'duration_s', extract(epoch from s.completed_at - s.started_at)::float8,
    'readings', coalesce(a.readings, 0),
    'metrics', coalesce(a.metrics, '{}'::jsonb))`;
const SUMMARY_SOURCE = `lateral (
    select sum(m.rows)::int8 as readings,
           jsonb_object_agg(m.name, jsonb_build_object('count', m.n, 'min', m.lo, 'max', m.hi, 'avg', m.total / m.n,
                                                       'first', m.first[2], 'last', m.last[2])) filter (where m.n > 0) as metrics
      from (select ms.names[p.i] as name, sum(p.rows) filter (where p.i = 1) as rows, sum(p.n)::int8 as n,
                   min(p.lo) as lo, max(p.hi) as hi, sum(p.total) as total, min(p.first) as first, max(p.last) as last
              from (select r.metric_set, u.i, count(*) as rows, count(u.v) as n, min(u.v) as lo, max(u.v) as hi, sum(u.v) as total,
                           min(array[date_part('epoch', r.ts), u.v]) filter (where u.v is not null) as first,
                           max(array[date_part('epoch', r.ts), u.v]) filter (where u.v is not null) as last
                      from readings r cross join lateral unnest(r.vals) with ordinality as u(v, i)
                     where r.device_id = s.device_id and r.ts between s.started_at and s.completed_at
                     group by r.metric_set, u.i) p
              join metric_sets ms on ms.id = p.metric_set
             group by 1) m
  ) a`;

export interface AnnouncedSummary extends SessionRow {
  tenant_id: number;
  notify_email: string | null;
}

/**
 * Computes and stores the summaries of sessions in one statement (run it in the
 * transaction that announces them); sessions gone or still open are skipped. Each summary
 * is stale when a late reading bumped its session's revision after the statement's
 * snapshot: the row lock then sees the newer revision. Rows are locked in id order, as
 * late marks lock them: the two wait for each other, never deadlock.
 *
 * Returns only the sessions to announce: those getting their FIRST summary (a recompute
 * after late readings is not news) whose tenant has a session.completed webhook or that
 * asked for an e-mail.
 */
export async function summarizeSessions(tx: Db, ids: string[]): Promise<AnnouncedSummary[]> {
  return tx.query<AnnouncedSummary>(
    'sessions.summarize',
    `with computed as (
       select s.id, s.revision, ${SUMMARY} as summary
         from sessions s cross join ${SUMMARY_SOURCE}
        where s.id = any($1::uuid[]) and s.completed_at is not null
     ),
     prev as materialized (
       select s.id, s.summarized_at from sessions s where s.id in (select id from computed) order by s.id for update
     ),
     stored as (
       update sessions s set status = 'completed', summary = c.summary, stale = (s.revision <> c.revision),
              error = null, summarized_at = now()
         from computed c, prev p
        where s.id = c.id and p.id = s.id and s.status in ('completing', 'completed', 'failed')
       returning s.*, p.summarized_at is null as first
     )
     select s.tenant_id, s.notify_email, ${COLUMNS}
       from stored s join devices d on d.id = s.device_id
      where s.first
        and (s.notify_email is not null
             or exists (select 1 from webhooks w where w.tenant_id = s.tenant_id and 'session.completed' = any(w.events)))`,
    [ids],
  );
}

export async function markFailed(db: Db, id: string, error: string): Promise<void> {
  await db.query(
    'sessions.mark_failed',
    `update sessions set status = 'failed', error = $2::text where id = $1::uuid and status = 'completing'`,
    [id, error.slice(0, 1000)],
  );
}
