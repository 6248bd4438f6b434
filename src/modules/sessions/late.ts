import type { Db } from '../../infra/db.ts';
import { TS_IN } from '../readings/repository.ts';
import { SUMMARIZE_TASK } from './jobs.ts';

/**
 * A re-summary waits this long, and later late readings join it (the job key keeps its
 * first run time: a steady trickle cannot postpone it forever). A constant, not config:
 * the write path that calls this carries no configuration.
 */
const RESUMMARY_DELAY = '5 seconds';
/** graphile-worker's default: a re-summary is a correction worth retrying for days. */
const RESUMMARY_MAX_ATTEMPTS = 25;

const MARK = (windows: string) => `with w as (${windows}),
  late as (
    update sessions s set stale = true, revision = s.revision + 1
      from w
     where s.device_id = w.device_id and s.status in ('completing', 'completed')
       and s.completed_at >= w.lo and s.started_at <= w.hi
    returning s.id
  )
  select count(*)::int as n from graphile_worker.add_jobs(array(
    select row('${SUMMARIZE_TASK}', json_build_object('session_id', id), null, now() + interval '${RESUMMARY_DELAY}',
               ${RESUMMARY_MAX_ATTEMPTS}, '${SUMMARIZE_TASK}:' || id, null, null)::graphile_worker.job_spec
      from late), true)`;

/**
 * Called inside the transaction that writes readings: sessions whose completed window a
 * written reading falls into get their summary marked stale (revision bumped) and a
 * re-summary queued, atomically with the readings, so a summary is never silently wrong.
 * `deviceIds`/`tsUs` are the written rows. Cheap when the devices have no completed
 * sessions: one probe of a partial index per device.
 */
export async function markLateSessions(tx: Db, deviceIds: number[], tsUs: number[]): Promise<void> {
  const span = new Map<number, [number, number]>();
  for (let i = 0; i < deviceIds.length; i++) {
    const d = deviceIds[i]!;
    const t = tsUs[i]!;
    const s = span.get(d);
    if (!s) span.set(d, [t, t]);
    else if (t < s[0]) s[0] = t;
    else if (t > s[1]) s[1] = t;
  }
  if (!span.size) return;
  const spans = [...span];
  await tx.query(
    'sessions.mark_late',
    MARK(`select d as device_id, ${TS_IN('lo')} as lo, ${TS_IN('hi')} as hi from unnest($1::int8[], $2::int8[], $3::int8[]) as u(d, lo, hi)`),
    [spans.map((s) => s[0]), spans.map((s) => s[1][0]), spans.map((s) => s[1][1])],
  );
}

/**
 * The same for a streaming import, from its staging table (import_rows, device names of
 * one tenant). Skips the pass over the staged rows when the tenant has no completed session.
 */
export async function markLateImportedSessions(tx: Db, tenantId: number): Promise<void> {
  await tx.query(
    'sessions.mark_late_import',
    MARK(`select d.id as device_id, min(i.ts) as lo, max(i.ts) as hi
            from import_rows i join devices d on d.tenant_id = $1::bigint and d.external_id = i.device
           where exists (select 1 from sessions t where t.tenant_id = $1::bigint and t.status in ('completing', 'completed'))
           group by d.id`),
    [tenantId],
  );
}
