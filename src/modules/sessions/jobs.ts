import type { TaskList } from 'graphile-worker';
import { Type } from 'typebox';
import { Value } from 'typebox/value';
import type { JobDeps } from '../../jobs/tasks.ts';
import { enqueueMail } from '../../infra/mail.ts';
import { emitEvent } from '../webhooks/service.ts';
import * as repo from './repository.ts';
import { toSession } from './service.ts';
import type { Session } from './schemas.ts';

import { SUMMARIZE_TASK } from './task-names.ts';



const SummarizePayload = Type.Object({ session_id: Type.String({ format: 'uuid' }) });

/**
 * `session.summarize`: computes a completed session's summary from its readings and
 * stores it (status completed). Idempotent, so a run repeated after a crash or a retry
 * gives the same result. A throw is retried with backoff; the last attempt's failure
 * marks the session failed (an admin retry of the job can still complete it).
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
        const computed = await repo.computeSummary(db, id);
        if (!computed) return; // deleted with its device since
        await db.tx(async (tx) => {
          const stored = await repo.storeSummary(tx, id, computed);
          // the first summary is news (webhook, e-mail); a recompute after late readings is not
          if (!stored?.first) return;
          const session = toSession((await repo.findSessions(tx, [stored.tenant_id], [id]))[0]!);
          await emitEvent(tx, stored.tenant_id, 'session.completed', session);
          if (stored.notify_email) await enqueueMail(tx, summaryMail(stored.notify_email, session));
        });
      } catch (err) {
        if (helpers.job.attempts >= helpers.job.max_attempts) await repo.markFailed(db, id, (err as Error).message);
        throw err;
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
