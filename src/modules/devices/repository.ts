import type { Db } from '../../infra/db.ts';

export interface DeviceRow {
  id: number;
  external_id: string;
  name: string | null;
  status: 'active' | 'inactive';
  metadata: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, external_id, name, status, metadata, created_at, updated_at';

export async function insertDevice(
  db: Db,
  tenantId: number,
  d: { id: string; name: string | null; status: string; metadata: object },
): Promise<DeviceRow | undefined> {
  const rows = await db.query<DeviceRow>(
    'devices.insert',
    `insert into devices (tenant_id, external_id, name, status, metadata)
     values ($1::bigint, $2::text, $3::text, $4::text, $5::jsonb)
     on conflict (tenant_id, external_id) do nothing
     returning ${COLUMNS}`,
    [tenantId, d.id, d.name, d.status, JSON.stringify(d.metadata)],
  );
  return rows[0];
}

export async function findDevice(db: Db, tenantId: number, externalId: string): Promise<DeviceRow | undefined> {
  const rows = await db.query<DeviceRow>(
    'devices.find',
    `select ${COLUMNS} from devices where tenant_id = $1::bigint and external_id = $2::text`,
    [tenantId, externalId],
  );
  return rows[0];
}

/** One keyset page ordered by external_id; `after` is the last id of the previous page. */
export async function listDevices(
  db: Db,
  tenantId: number,
  status: string | null,
  after: string | null,
  limit: number,
): Promise<DeviceRow[]> {
  return db.query<DeviceRow>(
    'devices.list',
    `select ${COLUMNS} from devices
      where tenant_id = $1::bigint
        and ($2::text is null or status = $2::text)
        and ($3::text is null or external_id > $3::text)
      order by external_id
      limit $4::int`,
    [tenantId, status, after, limit],
  );
}

/** Sets the given fields; `undefined` leaves a field unchanged, `null` clears the name. */
export async function updateDevice(
  db: Db,
  tenantId: number,
  externalId: string,
  patch: { name?: string | null; status?: string; metadata?: object },
): Promise<DeviceRow | undefined> {
  const rows = await db.query<DeviceRow>(
    'devices.update',
    `update devices set
        name = case when $3::boolean then $4::text else name end,
        status = coalesce($5::text, status),
        metadata = coalesce($6::jsonb, metadata),
        updated_at = now()
      where tenant_id = $1::bigint and external_id = $2::text
      returning ${COLUMNS}`,
    [
      tenantId,
      externalId,
      patch.name !== undefined,
      patch.name ?? null,
      patch.status ?? null,
      patch.metadata === undefined ? null : JSON.stringify(patch.metadata),
    ],
  );
  return rows[0];
}

/** Deletes the device, its latest values (cascade) and all its readings. */
export async function deleteDevice(db: Db, tenantId: number, externalId: string): Promise<boolean> {
  const rows = await db.query<{ id: number }>(
    'devices.delete',
    `with d as (
       delete from devices where tenant_id = $1::bigint and external_id = $2::text returning id
     ), r as (
       delete from readings where device_id in (select id from d)
     )
     select id from d`,
    [tenantId, externalId],
  );
  return rows.length > 0;
}
