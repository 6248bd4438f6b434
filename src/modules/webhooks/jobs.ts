import type { TaskList } from 'graphile-worker';
import type { Logger } from 'pino';
import { Value } from 'typebox/value';
import type { Config } from '../../config.ts';
import type { Database } from '../../infra/db.ts';
import type { Metrics } from '../../infra/metrics.ts';
import { postWebhook } from './post.ts';
import * as repo from './repository.ts';
import { DeliveryPayload } from './schemas.ts';
import { signature } from './service.ts';

export interface WebhookDeps {
  config: Config;
  database: Database;
  metrics: Metrics;
  logger: Logger;
}

/**
 * `webhook.deliver`: one job per delivery, so a dead endpoint only delays its own
 * deliveries. A non-2xx answer, a timeout or a network error throws, and the job system
 * retries with exponential backoff. The body is the same on every attempt; the timestamp
 * (and so the signature) is that of the attempt, so receivers can reject old replays.
 * Unless WEBHOOK_ALLOW_PRIVATE, an address that is not public is refused (see targets.ts):
 * that fails the attempt like a network error, and is retried the same way (the setting
 * may be changed, a name may resolve elsewhere later).
 */
export function webhookTasks(deps: WebhookDeps): TaskList {
  const { database, metrics, logger, config } = deps;
  return {
    'webhook.deliver': async (payload, helpers) => {
      if (!Value.Check(DeliveryPayload, payload)) {
        logger.error({ payload }, 'webhook.deliver: invalid payload, dropped');
        metrics.webhookDeliveries.inc({ outcome: 'dropped' });
        return;
      }
      const hook = await repo.findWebhook(database.api, payload.webhook_id);
      if (!hook) {
        // deleted since the event: nobody wants it any more
        metrics.webhookDeliveries.inc({ outcome: 'dropped' });
        return;
      }
      const body = JSON.stringify({ id: payload.delivery_id, event: payload.event, created_at: payload.occurred_at, data: payload.data });
      const timestamp = String(Math.floor(Date.now() / 1000));
      try {
        const status = await postWebhook(new URL(hook.url), body, {
          headers: {
            'content-type': 'application/json',
            'user-agent': 'pulse-webhooks',
            'x-pulse-event': payload.event,
            'x-pulse-delivery': payload.delivery_id,
            'x-pulse-timestamp': timestamp,
            'x-pulse-signature': signature(hook.secret, timestamp, body),
          },
          signal: AbortSignal.any([AbortSignal.timeout(config.WEBHOOK_TIMEOUT_MS), helpers.abortSignal]),
          allowPrivate: config.WEBHOOK_ALLOW_PRIVATE,
        });
        // a redirect (3xx, never followed) is not a delivery either
        if (status < 200 || status > 299) throw new Error(`webhook ${hook.id} answered ${status}`);
      } catch (err) {
        metrics.webhookDeliveries.inc({ outcome: 'failed' });
        helpers.logger.warn(`webhook ${hook.id} delivery ${payload.delivery_id} failed: ${(err as Error).message}`);
        throw err;
      }
      metrics.webhookDeliveries.inc({ outcome: 'delivered' });
    },
  };
}
