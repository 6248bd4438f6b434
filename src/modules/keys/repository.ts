import type { Db } from '../../infra/db.ts';

export type Scope = 'read' | 'write' | 'admin';

export interface KeyIdentity {
  key_id: number;
  tenant_id: number;
  tenant: string;
  scopes: Scope[];
  auto_create_devices: boolean;
}

export interface KeyRow {
  id: number;
  tenant: string;
  prefix: string;
  name: string | null;
  scopes: Scope[];
  created_at: Date;
  revoked_at: Date | null;
}

export async function findActiveKeyByHash(db: Db, hash: Buffer): Promise<KeyIdentity | undefined> {
  const rows = await db.query<KeyIdentity>(
    'keys.find_by_hash',
    `select k.id as key_id, k.tenant_id, t.name as tenant, k.scopes, t.auto_create_devices
       from api_keys k join tenants t on t.id = k.tenant_id
      where k.hash = $1::bytea and k.revoked_at is null`,
    [hash],
  );
  return rows[0];
}

export async function upsertTenant(db: Db, name: string): Promise<number> {
  const rows = await db.query<{ id: number }>(
    'tenants.upsert',
    `insert into tenants (name) values ($1::text)
     on conflict (name) do update set name = excluded.name
     returning id`,
    [name],
  );
  return rows[0]!.id;
}

export async function setTenantAutoCreate(db: Db, name: string, enabled: boolean): Promise<boolean> {
  const rows = await db.query(
    'tenants.set_auto_create',
    'update tenants set auto_create_devices = $2::boolean where name = $1::text returning id',
    [name, enabled],
  );
  return rows.length > 0;
}

export async function insertKey(
  db: Db,
  tenantId: number,
  prefix: string,
  hash: Buffer,
  scopes: Scope[],
  name: string | null,
): Promise<number> {
  const rows = await db.query<{ id: number }>(
    'keys.insert',
    `insert into api_keys (tenant_id, prefix, hash, scopes, name)
     values ($1::bigint, $2::text, $3::bytea, $4::text[], $5::text) returning id`,
    [tenantId, prefix, hash, scopes, name],
  );
  return rows[0]!.id;
}

export async function listKeys(db: Db, tenant: string | null): Promise<KeyRow[]> {
  return db.query<KeyRow>(
    'keys.list',
    `select k.id, t.name as tenant, k.prefix, k.name, k.scopes, k.created_at, k.revoked_at
       from api_keys k join tenants t on t.id = k.tenant_id
      where $1::text is null or t.name = $1::text
      order by k.id`,
    [tenant],
  );
}

export async function revokeKey(db: Db, id: number): Promise<Buffer | undefined> {
  const rows = await db.query<{ hash: Buffer }>(
    'keys.revoke',
    'update api_keys set revoked_at = now() where id = $1::bigint and revoked_at is null returning hash',
    [id],
  );
  return rows[0]?.hash;
}
