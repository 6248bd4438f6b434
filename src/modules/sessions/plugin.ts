import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { CompletionBatcher } from './completions.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Group commit of session completions with their summary jobs. */
    sessionCompletions: CompletionBatcher;
  }
}

/** The completion batcher on the API pool; on close, commits what is queued. */
export const sessionCompletionsPlugin = fp(
  async (app: FastifyInstance) => {
    const { config, database, logger } = app.pulse;
    const batcher = new CompletionBatcher(
      database.api,
      {
        maxBatch: config.SESSION_COMPLETE_BATCH_MAX,
        maxQueued: config.SESSION_COMPLETE_QUEUE_MAX,
        maxAttempts: config.JOBS_MAX_ATTEMPTS,
        summaryWindowMs: config.SESSION_SUMMARY_WINDOW_MS,
      },
      logger,
    );
    app.decorate('sessionCompletions', batcher);
    app.addHook('onClose', () => batcher.close());
  },
  { name: 'pulse-session-completions' },
);
