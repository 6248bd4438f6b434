import type { DeviceRow } from './repository.ts';
import type { Device } from './schemas.ts';

/**
 * A device as the API shows it: the body of POST/GET /v1/devices and the data of the
 * `device.created` event, whichever path created it (the API or a write's auto-creation).
 * Pure, in a file of its own: the write path uses it without the devices service.
 */
export function toDevice(row: DeviceRow): Device {
  return {
    id: row.external_id,
    name: row.name,
    status: row.status,
    metadata: row.metadata,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}
