/**
 * Fills the "before" baseline's tables (bench/baseline/schema.sql) with the same data
 * as pulse's tables in the same database, so `pulse bench` compares both systems on
 * identical data. Bench tooling, not part of the baseline service itself: it uses
 * set-based SQL so that loading 26M values takes seconds, not hours.
 *
 * - Devices keep pulse's ids (so ties in the dashboard order break the same way) and
 *   are copied for every tenant, by tenant name.
 * - pulse stores one row per reading (device, ts) with its values in an array named by a
 *   metric set (migrations/0001_init.sql); the baseline stores one row per value, so each
 *   reading is unnested into its (metric, value) pairs, in (device, ts, metric) order.
 * - `apiKey` is stored in plain text for `tenantName` (the naive way, on purpose).
 */
import { readFile } from 'node:fs/promises';
import pg from 'pg';

const SCHEMA_URL = new URL('./schema.sql', import.meta.url);

export async function loadBaselineFromPulse(databaseUrl: string, tenantName: string, apiKey: string): Promise<{ rows: number }> {
  const schema = await readFile(SCHEMA_URL, 'utf8');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('begin');
    try {
      await client.query(schema);
      await client.query(
        `insert into baseline_devices (id, tenant, external_id, status)
         select d.id, t.name, d.external_id, d.status
           from devices d join tenants t on t.id = d.tenant_id
          order by d.id`,
      );
      await client.query(
        `select setval(pg_get_serial_sequence('baseline_devices', 'id'), coalesce(max(id), 0) + 1, false)
           from baseline_devices`,
      );
      const copied = await client.query(
        `insert into baseline_readings (device_id, metric, ts, value)
         select r.device_id, v.metric, r.ts, v.value
           from readings r
           join metric_sets m on m.id = r.metric_set
           cross join lateral unnest(m.names, r.vals) as v(metric, value)
          order by r.device_id, r.ts, v.metric`,
      );
      await client.query('insert into baseline_keys (key, tenant) values ($1, $2)', [apiKey, tenantName]);
      await client.query('commit');
      await client.query('analyze baseline_keys, baseline_devices, baseline_readings');
      return { rows: copied.rowCount ?? 0 };
    } catch (err) {
      await client.query('rollback').catch(() => {});
      throw err;
    }
  } finally {
    await client.end();
  }
}
