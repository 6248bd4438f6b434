import type { Db } from '../../infra/db.ts';
import { problem } from '../../http/errors.ts';
import { decodeCursor, encodeCursor } from '../../lib/cursor.ts';
import * as repo from './repository.ts';
import type { CreateDeviceBody, Device, ListDevicesQuery, PatchDeviceBody } from './schemas.ts';

const MAX_METADATA_BYTES = 16 * 1024;

export function toDevice(row: repo.DeviceRow): Device {
  return {
    id: row.external_id,
    name: row.name,
    status: row.status,
    metadata: row.metadata,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

function checkMetadata(metadata: object | undefined) {
  if (metadata && Buffer.byteLength(JSON.stringify(metadata)) > MAX_METADATA_BYTES) {
    throw problem('validation', `metadata must be at most ${MAX_METADATA_BYTES} bytes of JSON.`);
  }
}

export async function createDevice(db: Db, tenantId: number, body: CreateDeviceBody): Promise<Device> {
  checkMetadata(body.metadata);
  const row = await repo.insertDevice(db, tenantId, {
    id: body.id,
    name: body.name ?? null,
    status: body.status ?? 'active',
    metadata: body.metadata ?? {},
  });
  if (!row) throw problem('conflict', `Device '${body.id}' already exists.`);
  return toDevice(row);
}

export async function getDevice(db: Db, tenantId: number, externalId: string): Promise<repo.DeviceRow> {
  const row = await repo.findDevice(db, tenantId, externalId);
  // another tenant's device is indistinguishable from a missing one
  if (!row) throw problem('not-found', `No device '${externalId}'.`);
  return row;
}

export async function listDevices(db: Db, tenantId: number, q: ListDevicesQuery) {
  const after = q.cursor ? decodeCursor(q.cursor, ['string'] as const)[0] : null;
  const rows = await repo.listDevices(db, tenantId, q.status ?? null, after, q.limit);
  const last = rows[rows.length - 1];
  return {
    items: rows.map(toDevice),
    next_cursor: rows.length === q.limit && last ? encodeCursor([last.external_id]) : null,
  };
}

export async function patchDevice(db: Db, tenantId: number, externalId: string, body: PatchDeviceBody): Promise<Device> {
  checkMetadata(body.metadata);
  const row = await repo.updateDevice(db, tenantId, externalId, body);
  if (!row) throw problem('not-found', `No device '${externalId}'.`);
  return toDevice(row);
}

export async function deleteDevice(db: Db, tenantId: number, externalId: string): Promise<void> {
  if (!(await repo.deleteDevice(db, tenantId, externalId))) throw problem('not-found', `No device '${externalId}'.`);
}
