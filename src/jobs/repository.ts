import type { Db } from '../infra/db.ts';
import type { JobsSnapshot } from '../infra/metrics.ts';

/**
 * Reads and admin operations on graphile-worker's queue. Its tables are not tenant-scoped:
 * these statements see every job. A job's state: running (locked by a worker), failed
 * (attempts exhausted: kept until retried), queued (everything else, retries waiting
 * for their backoff included).
 */

export type JobState = 'queued' | 'running' | 'failed';

const STATE = `case when j.locked_at is not null then 'running' when j.attempts >= j.max_attempts then 'failed' else 'queued' end`;

export async function snapshot(db: Db): Promise<JobsSnapshot> {
  const [counts, oldest] = await Promise.all([
    db.query<JobsSnapshot['counts'][number]>(
      'jobs.counts',
      `select t.identifier as task, ${STATE} as state, count(*)::int as n
         from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
        group by 1, 2`,
    ),
    db.query<{ s: number }>(
      'jobs.oldest_queued',
      `select coalesce(extract(epoch from now() - min(run_at)), 0)::float8 as s
         from graphile_worker._private_jobs where is_available and run_at <= now()`,
    ),
  ]);
  return { counts, oldestQueuedS: oldest[0]!.s };
}

/** Seconds the oldest runnable job of these tasks has waited past its run time (null: none waits). */
export async function oldestRunnableAge(db: Db, tasks: string[]): Promise<number | null> {
  const rows = await db.query<{ s: number | null }>(
    'jobs.oldest_runnable',
    `select extract(epoch from now() - min(j.run_at))::float8 as s
       from graphile_worker._private_jobs j
       join graphile_worker._private_tasks t on t.id = j.task_id and t.identifier = any($1::text[])
       left join graphile_worker._private_job_queues q on q.id = j.job_queue_id
      where j.is_available and j.run_at <= now() and (q.id is null or q.locked_at is null)`,
    [tasks],
  );
  return rows[0]?.s ?? null;
}

export interface JobRow {
  id: string;
  task: string;
  state: JobState;
  queue: string | null;
  key: string | null;
  payload: unknown;
  priority: number;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  run_at: Date;
  locked_at: Date | null;
  locked_by: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = `j.id::text, t.identifier as task, ${STATE} as state, q.queue_name as queue, j.key, j.payload, j.priority,
  j.attempts, j.max_attempts, j.last_error, j.run_at, j.locked_at, j.locked_by, j.created_at, j.updated_at`;
const FROM = `graphile_worker._private_jobs j
  join graphile_worker._private_tasks t on t.id = j.task_id
  left join graphile_worker._private_job_queues q on q.id = j.job_queue_id`;

/** Newest first; `beforeId` is the last id of the previous page. */
export async function listJobs(
  db: Db,
  f: { state: JobState | null; task: string | null; beforeId: string | null; limit: number },
): Promise<JobRow[]> {
  return db.query<JobRow>(
    'jobs.list',
    `select ${COLUMNS} from ${FROM}
      where ($1::text is null or ${STATE} = $1::text)
        and ($2::text is null or t.identifier = $2::text)
        and ($3::int8 is null or j.id < $3::int8)
      order by j.id desc
      limit $4::int`,
    [f.state, f.task, f.beforeId, f.limit],
  );
}

export async function findJob(db: Db, id: string): Promise<JobRow | undefined> {
  const rows = await db.query<JobRow>('jobs.find', `select ${COLUMNS} from ${FROM} where j.id = $1::int8`, [id]);
  return rows[0];
}

/**
 * Runs a job again now with a fresh set of attempts (a failed job comes back to life);
 * returns it as rescheduled (a worker may take and finish it right after). Undefined when
 * the job is running (locked) or gone: it cannot be rescheduled under a worker.
 */
export async function retryJob(db: Db, id: string): Promise<JobRow | undefined> {
  const rows = await db.query<JobRow>(
    'jobs.retry',
    // the notification wakes idle workers at once instead of at their next poll
    `with j as (select * from graphile_worker.reschedule_jobs(array[$1::int8], run_at => now(), attempts => 0)),
          woken as (select pg_notify('jobs:insert', '{"count":1}') from j)
     select ${COLUMNS}
       from j join graphile_worker._private_tasks t on t.id = j.task_id
       left join graphile_worker._private_job_queues q on q.id = j.job_queue_id
      where (select count(*) from woken) >= 0`,
    [id],
  );
  return rows[0];
}
