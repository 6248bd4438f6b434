import type { Db } from '../infra/db.ts';
import { problem } from '../http/errors.ts';
import * as repo from './repository.ts';

export const JOB_STATES = ['queued', 'running', 'failed'] as const;

export interface JobView {
  id: string;
  task: string;
  state: repo.JobState;
  queue: string | null;
  key: string | null;
  payload: unknown;
  priority: number;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  run_at: string;
  locked_at: string | null;
  locked_by: string | null;
  created_at: string;
  updated_at: string;
}

export function toJob(r: repo.JobRow): JobView {
  return {
    ...r,
    run_at: r.run_at.toISOString(),
    locked_at: r.locked_at?.toISOString() ?? null,
    created_at: r.created_at.toISOString(),
    updated_at: r.updated_at.toISOString(),
  };
}

export async function listJobs(db: Db, q: { state?: repo.JobState; task?: string; limit: number; cursor?: string }) {
  if (q.cursor !== undefined && !/^\d{1,18}$/.test(q.cursor)) throw problem('invalid-cursor', 'The cursor is not one this API returned; start again without it.');
  const rows = await repo.listJobs(db, { state: q.state ?? null, task: q.task ?? null, beforeId: q.cursor ?? null, limit: q.limit });
  const last = rows[rows.length - 1];
  return { items: rows.map(toJob), next_cursor: rows.length === q.limit && last ? last.id : null };
}

/** Runs a queued or failed job again now, with its attempts reset. 404: no such job (done jobs are deleted); 409: running. */
export async function retryJob(db: Db, id: string): Promise<JobView> {
  const retried = await repo.retryJob(db, id);
  if (retried) return toJob(retried);
  const job = await repo.findJob(db, id);
  if (!job) throw problem('not-found', `No job ${id} (finished jobs are deleted).`);
  throw problem('conflict', `Job ${id} is running; retry it if it fails.`);
}

/** `pulse jobs list|retry`: the admin API's operations for the command line; returns the text to print. */
export async function jobsCommand(db: Db, args: string[], flags: { state?: string; task?: string; limit?: number }): Promise<string> {
  const [sub, id] = args;
  if (sub === 'list') {
    if (flags.state !== undefined && !(JOB_STATES as readonly string[]).includes(flags.state)) {
      throw new Error(`--state is one of ${JOB_STATES.join(', ')}`);
    }
    const { items } = await listJobs(db, { state: flags.state as repo.JobState | undefined, task: flags.task, limit: flags.limit ?? 100 });
    return items
      .map((j) => [j.id, j.task, j.state, `${j.attempts}/${j.max_attempts}`, j.run_at, (j.last_error ?? '').split('\n')[0]!.slice(0, 120)].join('\t'))
      .map((line) => `${line}\n`)
      .join('');
  }
  if (sub === 'retry') {
    if (!id || !/^\d{1,18}$/.test(id)) throw new Error('jobs retry needs a job id (see jobs list)');
    const job = await retryJob(db, id);
    return `job ${job.id} (${job.task}) queued to run now\n`;
  }
  throw new Error('usage: pulse jobs list [--state queued|running|failed] [--task T] [--limit N] | pulse jobs retry ID');
}
