import type { RequestCache } from '../../infra/cache.ts';
import type { Rendered } from '../../http/rendered.ts';
import type { Db } from '../../infra/db.ts';
import { problem } from '../../http/errors.ts';
import { decodeCursor, encodeCursor } from '../../lib/cursor.ts';
import { emitEvent } from '../webhooks/service.ts';
import * as repo from './repository.ts';
import type { CreateDeviceBody, Device, ListDevicesQuery, PatchDeviceBody } from './schemas.ts';
import { toDevice } from './view.ts';

const MAX_METADATA_BYTES = 16 * 1024;

function checkMetadata(metadata: object | undefined) {
  if (metadata && Buffer.byteLength(JSON.stringify(metadata)) > MAX_METADATA_BYTES) {
    throw problem('validation', `metadata must be at most ${MAX_METADATA_BYTES} bytes of JSON.`);
  }
}

// Reads are cached (static kind: CACHE_STATIC_TTL_MS); every change evicts the device's
// record and latest values, and the tenant's device lists and dashboards, before answering.

export async function createDevice(db: Db, cache: RequestCache, tenantId: number, body: CreateDeviceBody): Promise<Device> {
  checkMetadata(body.metadata);
  // the device.created webhook deliveries are queued in the transaction that creates it
  const created = await db.tx(async (tx) => {
    const row = await repo.insertDevice(tx, tenantId, {
      id: body.id,
      name: body.name ?? null,
      status: body.status ?? 'active',
      metadata: body.metadata ?? {},
    });
    if (!row) throw problem('conflict', `Device '${body.id}' already exists.`);
    const device = toDevice(row);
    await emitEvent(tx, tenantId, 'device.created', device);
    return device;
  });
  await cache.shared.afterDeviceChange(tenantId, body.id);
  return created;
}

/** The device, rendered (cached serialized: src/http/rendered.ts). */
export async function getDevice(db: Db, cache: RequestCache, tenantId: number, externalId: string): Promise<Rendered> {
  const rendered = await cache.rendered('device', cache.shared.keys.device(tenantId, externalId), async () => {
    const row = await repo.findDevice(db, tenantId, externalId);
    return row && toDevice(row);
  });
  // another tenant's device is indistinguishable from a missing one
  if (!rendered) throw problem('not-found', `No device '${externalId}'.`);
  return rendered;
}

export async function listDevices(db: Db, cache: RequestCache, tenantId: number, q: ListDevicesQuery) {
  const after = q.cursor ? decodeCursor(q.cursor, ['string'] as const)[0] : null;
  const status = q.status ?? null;
  const rendered = await cache.rendered(
    'devices',
    cache.shared.keys.devices(tenantId, status, q.limit, after),
    async () => {
      const rows = await repo.listDevices(db, tenantId, status, after, q.limit);
      const last = rows[rows.length - 1];
      return {
        items: rows.map(toDevice),
        next_cursor: rows.length === q.limit && last ? encodeCursor([last.external_id]) : null,
      };
    },
    undefined,
    [cache.shared.keys.devicesTag(tenantId)],
  );
  return rendered!;
}

export async function patchDevice(db: Db, cache: RequestCache, tenantId: number, externalId: string, body: PatchDeviceBody): Promise<Device> {
  checkMetadata(body.metadata);
  const row = await repo.updateDevice(db, tenantId, externalId, body);
  if (!row) throw problem('not-found', `No device '${externalId}'.`);
  await cache.shared.afterDeviceChange(tenantId, externalId);
  return toDevice(row);
}

export async function deleteDevice(db: Db, cache: RequestCache, tenantId: number, externalId: string): Promise<void> {
  if (!(await repo.deleteDevice(db, tenantId, externalId))) throw problem('not-found', `No device '${externalId}'.`);
  await cache.shared.afterDeviceChange(tenantId, externalId);
}
