import { createHmac, randomBytes } from 'node:crypto';
import type { Config } from '../../config.ts';
import type { Db } from '../../infra/db.ts';
import { problem } from '../../http/errors.ts';
import * as repo from './repository.ts';
import { MAX_WEBHOOKS_PER_TENANT, type CreateWebhookBody, type EventName, type Webhook } from './schemas.ts';
import { PRIVATE_SETTING, privateHostReason } from './targets.ts';

/** With the job system's exponential backoff (e^attempt seconds), about nine hours of retries. */
export const DELIVERY_MAX_ATTEMPTS = 10;

export function toWebhook(row: repo.WebhookRow): Webhook {
  return { id: row.id, url: row.url, events: row.events, created_at: row.created_at.toISOString() };
}

/**
 * Only absolute http(s) URLs; returned normalised (as the WHATWG URL parser writes it).
 * Unless `allowPrivate`, not to a non-public IP literal or `localhost`; names are not
 * resolved here (their addresses can change): delivery checks the address it connects to.
 */
export function checkUrl(text: string, allowPrivate: boolean): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw problem('validation', '`url` is not an absolute URL.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw problem('validation', '`url` must be an http:// or https:// URL.');
  const reason = allowPrivate ? null : privateHostReason(url.hostname);
  if (reason) throw problem('validation', `\`url\` must reach a public address: ${reason} (the server setting ${PRIVATE_SETTING} allows it).`);
  return url.toString();
}

export async function createWebhook(db: Db, tenantId: number, body: CreateWebhookBody, config: Pick<Config, 'WEBHOOK_ALLOW_PRIVATE'>) {
  const url = checkUrl(body.url, config.WEBHOOK_ALLOW_PRIVATE);
  // 256 random bits; `whsec_` tells people (and secret scanners) what it is
  const secret = `whsec_${randomBytes(32).toString('base64url')}`;
  const row = await repo.insertWebhook(db, tenantId, url, body.events, secret, MAX_WEBHOOKS_PER_TENANT);
  if (!row) throw problem('conflict', `A tenant has at most ${MAX_WEBHOOKS_PER_TENANT} webhooks: delete one first.`);
  return { ...toWebhook(row), secret };
}

export async function listWebhooks(db: Db, tenantId: number) {
  return { items: (await repo.listWebhooks(db, tenantId)).map(toWebhook) };
}

export async function deleteWebhook(db: Db, tenantId: number, id: string) {
  if (!(await repo.deleteWebhook(db, tenantId, id))) throw problem('not-found', `No webhook '${id}'.`);
}

/**
 * Queues one delivery per webhook of the tenant subscribed to `event`, in the caller's
 * transaction: a delivery exists exactly when the change it reports commits.
 */
export async function emitEvent(tx: Db, tenantId: number, event: EventName, data: unknown): Promise<number> {
  return emitEvents(tx, event, [{ tenantId, data }]);
}

/** emitEvent for many events of one kind (each of its tenant) in one statement, in the caller's transaction. */
export async function emitEvents(tx: Db, event: EventName, items: { tenantId: number; data: unknown }[]): Promise<number> {
  if (!items.length) return 0;
  return repo.enqueueDeliveries(tx, event, items, new Date().toISOString(), DELIVERY_MAX_ATTEMPTS);
}

/** `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`: what X-Pulse-Signature carries. */
export function signature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}
