import { Logger, runOnce, type TaskList } from 'graphile-worker';
import pg from 'pg';

/** Polls `fn` until it returns a value (not undefined); a generous bound, not a timing assertion. */
export async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A graphile-worker logger that prints nothing (tests that run jobs with runOnce). */
export const quietGraphileLogger = new Logger(() => () => {});

/**
 * graphile-worker's runOnce can resolve before its last "job complete" statement has
 * committed (the worker does not await it): wait until no job is locked any more.
 */
export async function settleJobs(pool: { query: (sql: string) => Promise<{ rows: { n: number }[] }> }): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const { rows } = await pool.query('select count(*)::int as n from graphile_worker.jobs where locked_at is not null');
    if (rows[0]!.n === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('jobs are still locked after runOnce');
}

/**
 * Runs the queued jobs once (graphile-worker's runOnce) on a pool of our own, ended before
 * returning, then waits for them to settle. With a connection string, runOnce ends its
 * pool without waiting and drops its error listener first: a test database dropped right
 * after then killed an idle connection with no listener (an uncaught error).
 */
export async function runJobsOnce(url: string, taskList: TaskList, settle: Parameters<typeof settleJobs>[0]): Promise<void> {
  const pgPool = new pg.Pool({ connectionString: url, max: 4 });
  pgPool.on('error', () => {});
  try {
    await runOnce({ pgPool, taskList, logger: quietGraphileLogger, concurrency: 1 });
    await settleJobs(settle);
  } finally {
    await pgPool.end();
  }
}
