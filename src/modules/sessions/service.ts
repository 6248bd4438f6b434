import type { Db } from '../../infra/db.ts';
import { problem } from '../../http/errors.ts';
import { decodeCursor, encodeCursor } from '../../lib/cursor.ts';
import { formatUs, nowUs } from '../../lib/time.ts';
import { timestampParam } from '../readings/timestamp.ts';
import type { CompletionBatcher } from './completions.ts';
import * as repo from './repository.ts';
import type { ListSessionsQuery, Session, StartSessionBody } from './schemas.ts';

export function toSession(row: repo.SessionRow): Session {
  return {
    id: row.id,
    device: row.device,
    status: row.status,
    started_at: formatUs(row.started_us),
    completed_at: row.completed_us === null ? null : formatUs(row.completed_us),
    summary: row.summary as Session['summary'],
    stale: row.stale,
    error: row.error,
  };
}

const notFound = (id: string) => problem('not-found', `No session '${id}'.`);

export async function startSession(db: Db, tenantId: number, device: string, body: StartSessionBody): Promise<Session> {
  let startedUs: number | null = null;
  if (body?.started_at !== undefined) {
    startedUs = timestampParam('started_at', body.started_at);
    // a window that starts later than now would end before it starts when completed now
    if (startedUs > nowUs()) throw problem('validation', 'started_at must not be in the future.');
  }
  const row = await repo.insertSession(db, tenantId, device, startedUs, body?.email ?? null);
  if (row) return toSession(row);
  const open = await repo.findOpenSession(db, tenantId, device);
  if (open) throw problem('conflict', `Device '${device}' already has an open session; complete it first.`, { session: open.id });
  if (!(await repo.deviceExists(db, tenantId, device))) throw problem('not-found', `No device '${device}'.`);
  // the open session was completed between the two statements: the client may simply retry
  throw problem('conflict', `Device '${device}' changed meanwhile; retry.`);
}

export async function getSession(db: Db, tenantId: number, id: string): Promise<Session> {
  const rows = await repo.findSessions(db, [tenantId], [id]);
  // another tenant's session is indistinguishable from a missing one
  if (!rows[0]) throw notFound(id);
  return toSession(rows[0]);
}

export async function completeSession(batcher: CompletionBatcher, tenantId: number, id: string): Promise<Session> {
  const row = await batcher.complete(tenantId, id);
  if (!row) throw notFound(id);
  return toSession(row);
}

export async function listSessions(db: Db, tenantId: number, device: string, q: ListSessionsQuery) {
  const after = q.cursor ? decodeCursor(q.cursor, ['number', 'string'] as const) : null;
  const rows = await repo.listSessions(db, tenantId, device, after, q.limit);
  if (!rows.length && !(await repo.deviceExists(db, tenantId, device))) throw problem('not-found', `No device '${device}'.`);
  const last = rows[rows.length - 1];
  return {
    items: rows.map(toSession),
    next_cursor: rows.length === q.limit && last ? encodeCursor([last.started_us, last.id]) : null,
  };
}
