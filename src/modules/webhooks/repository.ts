import type { Db } from '../../infra/db.ts';
import type { EventName } from './schemas.ts';

export interface WebhookRow {
  id: string;
  tenant_id: number;
  url: string;
  events: EventName[];
  secret: string;
  created_at: Date;
}

const COLUMNS = 'id::text, tenant_id, url, events, secret, created_at';

/** Inserts unless the tenant already has `max` webhooks (the count and insert in one statement). */
export async function insertWebhook(db: Db, tenantId: number, url: string, events: string[], secret: string, max: number) {
  const rows = await db.query<WebhookRow>(
    'webhooks.insert',
    `insert into webhooks (tenant_id, url, events, secret)
     select $1::bigint, $2::text, $3::text[], $4::text
      where (select count(*) from webhooks where tenant_id = $1::bigint) < $5::int
     returning ${COLUMNS}`,
    [tenantId, url, events, secret, max],
  );
  return rows[0];
}

export async function listWebhooks(db: Db, tenantId: number) {
  return db.query<WebhookRow>(
    'webhooks.list',
    `select ${COLUMNS} from webhooks where tenant_id = $1::bigint order by created_at, id`,
    [tenantId],
  );
}

export async function deleteWebhook(db: Db, tenantId: number, id: string): Promise<boolean> {
  const rows = await db.query('webhooks.delete', `delete from webhooks where tenant_id = $1::bigint and id = $2::uuid returning id`, [tenantId, id]);
  return rows.length > 0;
}

export async function findWebhook(db: Db, id: string) {
  const rows = await db.query<WebhookRow>('webhooks.find', `select ${COLUMNS} from webhooks where id = $1::uuid`, [id]);
  return rows[0];
}

/**
 * One `webhook.deliver` job per webhook of the tenant subscribed to the event, each with
 * its own delivery id: a single statement, in the caller's transaction.
 */
export async function enqueueDeliveries(db: Db, tenantId: number, event: EventName, data: unknown, occurredAt: string, maxAttempts: number) {
  const rows = await db.query<{ n: number }>(
    'webhooks.enqueue_deliveries',
    `select count(graphile_worker.add_job(
              'webhook.deliver',
              json_build_object('webhook_id', w.id, 'delivery_id', gen_random_uuid(), 'event', $2::text,
                                'occurred_at', $4::text, 'data', $3::json),
              max_attempts => $5::int))::int as n
       from webhooks w
      where w.tenant_id = $1::bigint and $2::text = any(w.events)`,
    [tenantId, event, JSON.stringify(data ?? null), occurredAt, maxAttempts],
  );
  return rows[0]!.n;
}
