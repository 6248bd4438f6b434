import type { Db } from '../../infra/db.ts';
import { TS_IN, TS_OUT } from '../readings/repository.ts';
import type { StoredParams } from './schemas.ts';

export interface ReportRow {
  id: string;
  tenant_id: number;
  params: StoredParams;
  status: 'queued' | 'running' | 'ready' | 'failed' | 'expired';
  rows: number | null;
  bytes: number | null;
  error: string | null;
  created_at: Date;
  created_us: number;
  finished_at: Date | null;
  expires_at: Date | null;
}

const COLUMNS = `id::text, tenant_id, params, status, rows, bytes, error, created_at, ${TS_OUT('created_at')} as created_us, finished_at, expires_at`;

export async function countPending(db: Db, tenantId: number): Promise<number> {
  const rows = await db.query<{ n: number }>(
    'reports.count_pending',
    `select count(*)::int as n from reports where tenant_id = $1::bigint and status in ('queued', 'running')`,
    [tenantId],
  );
  return rows[0]!.n;
}

/** Which of `externalIds` are devices of the tenant. */
export async function existingDevices(db: Db, tenantId: number, externalIds: string[]): Promise<string[]> {
  const rows = await db.query<{ external_id: string }>(
    'reports.existing_devices',
    `select external_id from devices where tenant_id = $1::bigint and external_id = any($2::text[])`,
    [tenantId, externalIds],
  );
  return rows.map((r) => r.external_id);
}

export async function countDevices(db: Db, tenantId: number, status: string | null): Promise<number> {
  const rows = await db.query<{ n: number }>(
    'reports.count_devices',
    `select count(*)::int as n from devices where tenant_id = $1::bigint and ($2::text is null or status = $2::text)`,
    [tenantId, status],
  );
  return rows[0]!.n;
}

export async function insertReport(db: Db, tenantId: number, params: StoredParams): Promise<ReportRow> {
  const rows = await db.query<ReportRow>(
    'reports.insert',
    `insert into reports (tenant_id, params) values ($1::bigint, $2::jsonb) returning ${COLUMNS}`,
    [tenantId, JSON.stringify(params)],
  );
  return rows[0]!;
}

export async function findReport(db: Db, tenantId: number, id: string): Promise<ReportRow | undefined> {
  const rows = await db.query<ReportRow>(
    'reports.find',
    `select ${COLUMNS} from reports where tenant_id = $1::bigint and id = $2::uuid`,
    [tenantId, id],
  );
  return rows[0];
}

/**
 * A report by id alone, with its link token's hash: for a download by e-mailed link, which
 * has no API key and so no tenant. The caller compares the hash before revealing anything.
 */
export async function findForLink(db: Db, id: string): Promise<(ReportRow & { download_token_hash: Buffer | null }) | undefined> {
  const rows = await db.query<ReportRow & { download_token_hash: Buffer | null }>(
    'reports.find_for_link',
    `select ${COLUMNS}, download_token_hash from reports where id = $1::uuid`,
    [id],
  );
  return rows[0];
}

/** One keyset page, newest first; `after` is the (created µs, id) of the previous page's last row. */
export async function listReports(db: Db, tenantId: number, after: readonly [number, string] | null, limit: number) {
  return db.query<ReportRow>(
    'reports.list',
    `select ${COLUMNS} from reports
      where tenant_id = $1::bigint
        and ($2::int8 is null or (created_at, id) < (${TS_IN('$2::int8')}, $3::uuid))
      order by created_at desc, id desc
      limit $4::int`,
    [tenantId, after?.[0] ?? null, after?.[1] ?? null, limit],
  );
}

// ---- the job ----------------------------------------------------------------------

/** Claims a report for generation; none when it is already finished (a duplicate or late job). */
export async function startReport(db: Db, id: string): Promise<ReportRow | undefined> {
  const rows = await db.query<ReportRow>(
    'reports.start',
    `update reports set status = 'running', error = null
      where id = $1::uuid and status in ('queued', 'running')
      returning ${COLUMNS}`,
    [id],
  );
  return rows[0];
}

/** The report's devices that still exist, in the order of the device listing. */
export async function reportDevices(db: Db, tenantId: number, devices: string[] | null, status: string | null) {
  return db.query<{ id: number; external_id: string }>(
    'reports.devices',
    `select id, external_id from devices
      where tenant_id = $1::bigint
        and ($2::text[] is null or external_id = any($2::text[]))
        and ($3::text is null or status = $3::text)
      order by external_id`,
    [tenantId, devices, status],
  );
}

/** The metric sets that contain any of `metrics` (the dictionary is small: one row per distinct set). */
export async function metricSetsWith(db: Db, metrics: string[]) {
  return db.query<{ id: number; names: string[] }>(
    'reports.metric_sets',
    `select id, names from metric_sets where names && $1::text[] order by id`,
    [metrics],
  );
}

/** `tokenHash`: the hash of the e-mailed link's token, or null when no link is handed out. */
export async function markReady(db: Db, id: string, rows: number, bytes: number, ttlDays: number, tokenHash: Buffer | null): Promise<ReportRow> {
  const out = await db.query<ReportRow>(
    'reports.mark_ready',
    `update reports set status = 'ready', rows = $2::int8, bytes = $3::int8, error = null,
            finished_at = now(), expires_at = now() + $4::int * interval '1 day', download_token_hash = $5::bytea
      where id = $1::uuid
      returning ${COLUMNS}`,
    [id, rows, bytes, ttlDays, tokenHash],
  );
  return out[0]!;
}

/** After a failed attempt: back to queued for the job system's retry, or failed for good. */
export async function markAttemptFailed(db: Db, id: string, error: string, final: boolean) {
  await db.query(
    'reports.mark_failed',
    `update reports set status = case when $3::boolean then 'failed' else 'queued' end, error = $2::text,
            finished_at = case when $3::boolean then now() end
      where id = $1::uuid and status = 'running'`,
    [id, error, final],
  );
}

export async function dueForExpiry(db: Db, limit: number) {
  return db.query<{ id: string; format: string }>(
    'reports.due_for_expiry',
    `select id::text, params->>'format' as format from reports
      where status = 'ready' and expires_at <= now()
      order by expires_at
      limit $1::int`,
    [limit],
  );
}

export async function markExpired(db: Db, ids: string[]): Promise<number> {
  const rows = await db.query(
    'reports.mark_expired',
    `update reports set status = 'expired' where id = any($1::uuid[]) and status = 'ready' returning id`,
    [ids],
  );
  return rows.length;
}
