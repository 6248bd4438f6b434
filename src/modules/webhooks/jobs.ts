import type { TaskList } from 'graphile-worker';
import type { Logger } from 'pino';
import { Value } from 'typebox/value';
import type { Config } from '../../config.ts';
import type { Database } from '../../infra/db.ts';
import type { Metrics } from '../../infra/metrics.ts';
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
        const res = await fetch(hook.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'pulse-webhooks',
            'x-pulse-event': payload.event,
            'x-pulse-delivery': payload.delivery_id,
            'x-pulse-timestamp': timestamp,
            'x-pulse-signature': signature(hook.secret, timestamp, body),
          },
          body,
          // a redirect is not a delivery: following it would send the payload somewhere unvetted
          redirect: 'manual',
          signal: AbortSignal.any([AbortSignal.timeout(config.WEBHOOK_TIMEOUT_MS), helpers.abortSignal]),
        });
        await res.body?.cancel();
        if (res.status < 200 || res.status > 299) throw new Error(`webhook ${hook.id} answered ${res.status}`);
      } catch (err) {
        metrics.webhookDeliveries.inc({ outcome: 'failed' });
        helpers.logger.warn(`webhook ${hook.id} delivery ${payload.delivery_id} failed: ${(err as Error).message}`);
        throw err;
      }
      metrics.webhookDeliveries.inc({ outcome: 'delivered' });
    },
  };
}
