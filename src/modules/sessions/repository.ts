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

/**
 * Moves the given open sessions to 'completing' (completed now); returns those that moved.
 * Sessions already completing, completed or failed are left as they are (idempotent).
 */
export async function completeSessions(db: Db, tenantIds: number[], ids: string[]): Promise<{ id: string }[]> {
  return db.query<{ id: string }>(
    'sessions.complete',
    `update sessions s set status = 'completing', completed_at = greatest(now(), s.started_at)
       from unnest($1::int8[], $2::uuid[]) as k(tenant_id, id)
      where s.id = k.id and s.tenant_id = k.tenant_id and s.status = 'open'
      returning s.id::text`,
    [tenantIds, ids],
  );
}

/** Summary jobs for many sessions in one statement (graphile_worker.add_jobs). */
export async function enqueueSummaries(db: Db, ids: string[], task: string, maxAttempts: number): Promise<void> {
  await db.query(
    'sessions.enqueue_summaries',
    `select count(*) from graphile_worker.add_jobs(array(
       select row($1::text, json_build_object('session_id', id), null, null, $2::smallint, $1::text || ':' || id, null, null)::graphile_worker.job_spec
         from unnest($3::text[]) as u(id)))`,
    [task, maxAttempts, ids],
  );
}

export interface ComputedSummary {
  revision: number;
  summary: Record<string, unknown>;
}

/**
 * The summary of a session from its readings in [started_at, completed_at]: per metric
 * count, min, max, avg, first and last (by ts), plus the duration; with the session's
 * revision as of the same snapshot.
 */
export async function computeSummary(db: Db, id: string): Promise<ComputedSummary | undefined> {
  const rows = await db.query<ComputedSummary>(
    'sessions.compute_summary',
    `select s.revision,
            jsonb_build_object(
              'duration_s', extract(epoch from s.completed_at - s.started_at)::float8,
              'readings', (select count(*) from readings r
                            where r.device_id = s.device_id and r.ts between s.started_at and s.completed_at),
              'metrics', coalesce((
                select jsonb_object_agg(m.metric, jsonb_build_object(
                         'count', m.n, 'min', m.lo, 'max', m.hi, 'avg', m.mean, 'first', m.first, 'last', m.last))
                  from (select u.name as metric, count(*) as n, min(u.v) as lo, max(u.v) as hi, avg(u.v) as mean,
                               (array_agg(u.v order by r.ts))[1] as first, (array_agg(u.v order by r.ts desc))[1] as last
                          from readings r
                          join metric_sets ms on ms.id = r.metric_set
                          cross join lateral unnest(ms.names, r.vals) as u(name, v)
                         where r.device_id = s.device_id and r.ts between s.started_at and s.completed_at
                           and u.v is not null
                         group by u.name) m), '{}'::jsonb)
            ) as summary
       from sessions s
      where s.id = $1::uuid and s.completed_at is not null`,
    [id],
  );
  return rows[0];
}

/** Stores a summary; it stays stale when a late reading bumped the revision after it was computed. */
/** Stores a summary; `first` when it is the session's first (not a recompute after late readings). */
export async function storeSummary(
  db: Db,
  id: string,
  computed: ComputedSummary,
): Promise<{ tenant_id: number; first: boolean; notify_email: string | null } | undefined> {
  const rows = await db.query<{ tenant_id: number; first: boolean; notify_email: string | null }>(
    'sessions.store_summary',
    `with prev as (select id, summarized_at from sessions where id = $1::uuid for update)
     update sessions s set status = 'completed', summary = $2::jsonb, stale = (s.revision <> $3::int),
            error = null, summarized_at = now()
       from prev
      where s.id = prev.id and s.status in ('completing', 'completed', 'failed')
      returning s.tenant_id, prev.summarized_at is null as first, s.notify_email`,
    [id, JSON.stringify(computed.summary), computed.revision],
  );
  return rows[0];
}

export async function markFailed(db: Db, id: string, error: string): Promise<void> {
  await db.query(
    'sessions.mark_failed',
    `update sessions set status = 'failed', error = $2::text where id = $1::uuid and status = 'completing'`,
    [id, error.slice(0, 1000)],
  );
}
