import type { Db } from '../../infra/db.ts';

export interface TenantRow {
  id: number;
  auto_create_devices: boolean;
}

/** The tenant an MQTT topic names (the broker's ACLs decide who may publish under it). */
export async function findTenantByName(db: Db, name: string): Promise<TenantRow | undefined> {
  const rows = await db.query<TenantRow>(
    'mqtt.find_tenant_by_name',
    'select id, auto_create_devices from tenants where name = $1::text',
    [name],
  );
  return rows[0];
}
