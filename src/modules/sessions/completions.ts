import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Db } from '../../infra/db.ts';
import { problem } from '../../http/errors.ts';
import { SUMMARIZE_BATCH_TASK, SUMMARIZE_TASK } from './task-names.ts';
import * as repo from './repository.ts';

export interface CompletionOptions {
  /** Completions per transaction. */
  maxBatch: number;
  /** Completions queued or being committed; past this, completions are refused with 503 at once. */
  maxQueued: number;
  /** max_attempts of the summary jobs. */
  maxAttempts: number;
  /** Flushes within a window of this many ms share one summary job (0: a job per flush). */
  summaryWindowMs: number;
}

interface Pending {
  tenantId: number;
  id: string;
  resolve: (row: repo.SessionRow | undefined) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for session completions (the ingest batcher's pattern, smaller): the
 * completions waiting while a flush is in flight are committed together by ONE statement,
 * whatever their number — it moves the open ones to 'completing', adds one summary job
 * for all it moved (repository.completeSessions) and returns every asked-for session.
 * A job exists exactly when its completion commits; a session already completing or
 * completed gets no second job, so a repeated completion is answered the same.
 */
export class CompletionBatcher {
  private queue: Pending[] = [];
  private queued = 0;
  private flushing = false;
  private closed = false;
  private idle: (() => void)[] = [];
  private readonly tasks: repo.CompletionTasks;

  constructor(
    private readonly db: Db,
    private readonly opts: CompletionOptions,
    private readonly log: Logger,
  ) {
    this.tasks = {
      single: SUMMARIZE_TASK,
      batch: SUMMARIZE_BATCH_TASK,
      maxAttempts: opts.maxAttempts,
      windowMs: opts.summaryWindowMs,
      windowKey: `${SUMMARIZE_BATCH_TASK}:${randomUUID().slice(0, 8)}`,
    };
  }

  /** Resolves with the session after the transaction completing it commits; undefined: no such session of the tenant. */
  complete(tenantId: number, id: string): Promise<repo.SessionRow | undefined> {
    if (this.closed) return Promise.reject(problem('unavailable', 'The server is shutting down; retry.', {}, { retryAfterS: 1 }));
    if (this.queued >= this.opts.maxQueued) {
      return Promise.reject(problem('unavailable', 'Too many session completions are waiting; nothing was changed. Retry after the indicated delay.', {}, { retryAfterS: 1 }));
    }
    this.queued++;
    return new Promise((resolve, reject) => {
      this.queue.push({ tenantId, id: id.toLowerCase(), resolve, reject });
      this.flush();
    });
  }

  private flush() {
    if (this.flushing || !this.queue.length) {
      if (!this.flushing && !this.queue.length) for (const done of this.idle.splice(0)) done();
      return;
    }
    this.flushing = true;
    const batch = this.queue.splice(0, this.opts.maxBatch);
    void this.commit(batch).finally(() => {
      this.queued -= batch.length;
      this.flushing = false;
      this.flush();
    });
  }

  private async commit(batch: Pending[]) {
    let rows: (repo.SessionRow & { tenant_id: number })[];
    try {
      rows = await repo.completeSessions(this.db, batch.map((p) => p.tenantId), batch.map((p) => p.id), this.tasks);
    } catch (err) {
      this.log.error({ err, completions: batch.length }, 'session completion flush failed; its requests were answered 503');
      const p503 = problem('unavailable', 'The completion could not be committed; nothing was changed. Retry.', {}, { cause: err, retryAfterS: 1 });
      for (const p of batch) p.reject(p503);
      return;
    }
    const keyOf = (tenantId: number, id: string) => `${tenantId}:${id}`;
    const byKey = new Map(rows.map((r) => [keyOf(r.tenant_id, r.id), r]));
    // still open: completed by a flush of another process that committed after the
    // statement's snapshot; a new statement sees it as it is now
    const raced = rows.filter((r) => r.status === 'open');
    let unanswered = new Set<string>();
    if (raced.length) {
      for (const r of raced) byKey.delete(keyOf(r.tenant_id, r.id));
      try {
        const fresh = await repo.findSessions(this.db, raced.map((r) => r.tenant_id), raced.map((r) => r.id));
        for (const r of fresh) byKey.set(keyOf(r.tenant_id, r.id), r);
      } catch (err) {
        // the flush itself committed; only these answers are missing, and a repeat is idempotent
        this.log.error({ err, completions: raced.length }, 'reading concurrently completed sessions failed; their requests were answered 503');
        unanswered = new Set(raced.map((r) => keyOf(r.tenant_id, r.id)));
        const p503 = problem('unavailable', 'The session changed meanwhile and could not be read again. Retry.', {}, { cause: err, retryAfterS: 1 });
        for (const p of batch) if (unanswered.has(keyOf(p.tenantId, p.id))) p.reject(p503);
      }
    }
    for (const p of batch) if (!unanswered.has(keyOf(p.tenantId, p.id))) p.resolve(byKey.get(keyOf(p.tenantId, p.id)));
  }

  /** Stops accepting and waits for what is queued to commit. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.flushing || this.queue.length) await new Promise<void>((resolve) => this.idle.push(resolve));
  }
}
