import type { TaskList } from 'graphile-worker';
import { Type } from 'typebox';
import { Value } from 'typebox/value';
import type { JobDeps } from '../../jobs/tasks.ts';
import type { Db } from '../../infra/db.ts';
import { enqueueMails } from '../../infra/mail.ts';
import { emitEvents } from '../webhooks/service.ts';
import * as repo from './repository.ts';
import { toSession } from './service.ts';
import type { Session } from './schemas.ts';
import { SUMMARIZE_BATCH_TASK, SUMMARIZE_TASK } from './task-names.ts';

const SessionUuid = Type.String({ format: 'uuid' });
const SummarizePayload = Type.Object({ session_id: SessionUuid });
/** One completion flush's sessions: at most SESSION_COMPLETE_BATCH_MAX's upper bound. */
const FlushSessions = Type.Object({ session_ids: Type.Array(SessionUuid, { minItems: 1, maxItems: 10_000 }) });
/** A batch job: one element per flush of its window (a single object: jobs queued before windows). */
const SummarizeBatchPayload = Type.Union([Type.Array(FlushSessions, { minItems: 1 }), FlushSessions]);
/** Sessions summarized in one transaction: a window's job under heavy load holds many flushes. */
const SUMMARY_CHUNK = 1_000;

/**
 * Computes and stores the summaries of the sessions (one set-based statement) and, in the
 * same transaction, announces the sessions getting their FIRST summary — webhooks and
 * e-mails, one statement each for all of them, only when some tenant subscribed or some
 * session asked for an e-mail. A recompute after late readings is not news. Idempotent: a
 * run repeated after a crash stores the same summaries and announces nothing twice.
 */
async function summarize(db: Db, ids: string[]): Promise<void> {
  await db.tx(async (tx) => {
    const announced = await repo.summarizeSessions(tx, ids);
    if (!announced.length) return;
    const sessions = announced.map((row) => ({ row, session: toSession(row) }));
    await emitEvents(tx, 'session.completed', sessions.map(({ row, session }) => ({ tenantId: row.tenant_id, data: session })));
    await enqueueMails(tx, sessions.flatMap(({ row, session }) => (row.notify_email ? [summaryMail(row.notify_email, session)] : [])));
  });
}

/**
 * `session.summarize` (one session: flushes that moved one, late-data re-summaries,
 * fallbacks of failed batches, jobs queued by older versions): a throw is retried with
 * backoff; the last attempt's failure marks the session failed (an admin retry of the
 * job can still complete it).
 *
 * `session.summarize_batch` (the sessions the completion flushes of one window moved):
 * one transaction per SUMMARY_CHUNK sessions. Failure isolation: when a chunk fails — for
 * whatever reason, a single bad session fails the whole store statement — its sessions
 * still 'completing' are re-queued as per-session jobs (one add_jobs, with their job keys)
 * and the job goes on. So a poison session cannot block the others: each gets its own
 * retries, and only the bad one ends up failed through the per-session path. A transient
 * failure costs only the batching of that chunk. Only when the re-queue itself fails does
 * the batch job throw, and the job system retries it (chunks already stored are stored
 * again, with the same summaries, and announced nothing twice).
 */
export function sessionTasks(deps: JobDeps): TaskList {
  const db = deps.database.api;
  return {
    [SUMMARIZE_TASK]: async (payload, helpers) => {
      // queued jobs outlive the code that queued them: a payload that does not validate never will
      if (!Value.Check(SummarizePayload, payload)) {
        deps.logger.error({ payload }, `${SUMMARIZE_TASK}: invalid payload, dropped`);
        return;
      }
      const id = payload.session_id;
      try {
        await summarize(db, [id]);
      } catch (err) {
        if (helpers.job.attempts >= helpers.job.max_attempts) await repo.markFailed(db, id, (err as Error).message);
        throw err;
      }
    },

    [SUMMARIZE_BATCH_TASK]: async (payload, helpers) => {
      if (!Value.Check(SummarizeBatchPayload, payload)) {
        deps.logger.error({ payload }, `${SUMMARIZE_BATCH_TASK}: invalid payload, dropped`);
        return;
      }
      const ids = [...new Set((Array.isArray(payload) ? payload : [payload]).flatMap((p) => p.session_ids))];
      for (let i = 0; i < ids.length; i += SUMMARY_CHUNK) {
        const chunk = ids.slice(i, i + SUMMARY_CHUNK);
        try {
          await summarize(db, chunk);
        } catch (err) {
          const requeued = await repo.requeueSummaries(db, chunk, SUMMARIZE_TASK, helpers.job.max_attempts);
          deps.logger.warn({ err, sessions: chunk.length, requeued }, `${SUMMARIZE_BATCH_TASK} failed; its pending sessions were re-queued one job each`);
        }
      }
    },
  };
}

function summaryMail(to: string, session: Session) {
  const lines = Object.entries((session.summary?.metrics ?? {}) as Record<string, { count: number; min: number; max: number; avg: number }>).map(
    ([metric, m]) => `${metric}: ${m.count} values, min ${m.min}, max ${m.max}, avg ${m.avg}`,
  );
  return {
    to,
    subject: `Session of ${session.device} completed`,
    text: [
      `Session ${session.id} of device ${session.device}`,
      `from ${session.started_at} to ${session.completed_at}`,
      '',
      ...(lines.length ? lines : ['No readings in the session.']),
    ].join('\n'),
  };
}
