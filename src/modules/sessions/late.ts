import type { Db } from '../../infra/db.ts';
import { SUMMARIZE_TASK } from './task-names.ts';

/**
 * A re-summary waits this long, and later late readings join it (the job key keeps its
 * first run time: a steady trickle cannot postpone it forever). A constant, not config:
 * the write path that calls this carries no configuration.
 */
const RESUMMARY_DELAY = '5 seconds';
/** graphile-worker's default: a re-summary is a correction worth retrying for days. */
const RESUMMARY_MAX_ATTEMPTS = 25;

/**
 * CTEs (to append to a WITH) that mark completed sessions whose window a written reading
 * falls into, `windows` giving (device_id, lo, hi) per written device, and queue their
 * re-summaries; `late_jobs` must be referenced by the statement so that it runs. One probe
 * of a partial index per device (offset 0 keeps the planner from turning the probes into a
 * join), and add_jobs is called only when a session was marked.
 */
export const LATE_SESSIONS_CTES = (windows: string) => `late_windows as (${windows}),
  late_candidates as (
    -- one probe of sessions_late_idx per written device, whatever the statistics say (a join
    -- could be planned as a read of every completed session: migrations/0007)
    select c.id from late_windows w
      cross join lateral (select t.id from sessions t
                           where t.device_id = w.device_id and t.status in ('completing', 'completed')
                             and t.completed_at >= w.lo and t.started_at <= w.hi
                          offset 0) c
  ),
  late_sessions as (
    -- locked in id order, as the batch summary store locks them: the two wait, never deadlock
    update sessions s set stale = true, revision = s.revision + 1
      from (select t.id from sessions t
             where t.id in (select id from late_candidates)
               and t.status in ('completing', 'completed')
             order by t.id for update of t) x
     where s.id = x.id
    returning s.id
  ),
  late_jobs as (
    select count(*)::int as n from graphile_worker.add_jobs(array(
      select row('${SUMMARIZE_TASK}', json_build_object('session_id', id), null, now() + interval '${RESUMMARY_DELAY}',
                 ${RESUMMARY_MAX_ATTEMPTS}, '${SUMMARIZE_TASK}:' || id, null, null)::graphile_worker.job_spec
        from late_sessions), true)
     where exists (select 1 from late_sessions)
  )`;

const MARK = (windows: string) => `with ${LATE_SESSIONS_CTES(windows)} select (select n from late_jobs) as n`;

/** Late sessions of a streaming import, from the time span it wrote per device (epoch µs). */
export async function markLateSessionsInWindows(tx: Db, deviceIds: number[], loUs: number[], hiUs: number[]): Promise<void> {
  await tx.query(
    'sessions.mark_late_import',
    MARK(`select w.d as device_id, timestamptz 'epoch' + w.lo * interval '1 microsecond' as lo,
                 timestamptz 'epoch' + w.hi * interval '1 microsecond' as hi
            from unnest($1::int8[], $2::int8[], $3::int8[]) as w(d, lo, hi)`),
    [deviceIds, loUs, hiUs],
  );
}
