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
 * Per event (one per item, of its tenant), one `webhook.deliver` job per webhook of the
 * tenant subscribed to it, each with its own delivery id: one statement and one add_jobs
 * call for all, in the caller's transaction; add_jobs is not called when none is subscribed.
 */
export async function enqueueDeliveries(
  db: Db,
  event: EventName,
  items: { tenantId: number; data: unknown }[],
  occurredAt: string,
  maxAttempts: number,
) {
  const rows = await db.query<{ n: number }>(
    'webhooks.enqueue_deliveries',
    `with specs as (
       select row('webhook.deliver',
                  json_build_object('webhook_id', w.id, 'delivery_id', gen_random_uuid(), 'event', $1::text,
                                    'occurred_at', $2::text, 'data', e.data),
                  null, null, $3::smallint, null, null, null)::graphile_worker.job_spec as spec
         from unnest($4::int8[], $5::json[]) as e(tenant_id, data)
         join webhooks w on w.tenant_id = e.tenant_id and $1::text = any(w.events)
     )
     select count(*)::int as n from graphile_worker.add_jobs(array(select spec from specs))
      where exists (select 1 from specs)`,
    [event, occurredAt, maxAttempts, items.map((i) => i.tenantId), items.map((i) => JSON.stringify(i.data ?? null))],
  );
  return rows[0]!.n;
}
