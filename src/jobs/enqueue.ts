import type { Db } from '../infra/db.ts';

export interface EnqueueOptions {
  /** Deduplicates: a pending job with the same key is replaced (debounce) instead of added. */
  jobKey?: string;
  /** 'replace' (default): the payload and run time are replaced; 'preserve_run_at': only the payload. */
  jobKeyMode?: 'replace' | 'preserve_run_at';
  runAt?: Date;
  maxAttempts?: number;
  /** Jobs in one queue run one at a time, in order. */
  queue?: string;
  priority?: number;
}

/**
 * Adds a graphile-worker job. Pass the transaction that makes the state change causing the
 * job: the job then exists exactly when that change commits, so it can never be lost or run
 * for a change that rolled back.
 */
export async function enqueue(db: Db, task: string, payload: unknown, opts: EnqueueOptions = {}): Promise<string> {
  const rows = await db.query<{ id: string }>(
    'jobs.enqueue',
    `select (graphile_worker.add_job($1, $2::json, queue_name => $3, run_at => $4, max_attempts => $5,
                                     job_key => $6, priority => $7, job_key_mode => coalesce($8, 'replace'))).id::text as id`,
    [
      task,
      JSON.stringify(payload ?? {}),
      opts.queue ?? null,
      opts.runAt ?? null,
      opts.maxAttempts ?? null,
      opts.jobKey ?? null,
      opts.priority ?? null,
      opts.jobKeyMode ?? null,
    ],
  );
  return rows[0]!.id;
}
