import { Logger } from 'graphile-worker';

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
