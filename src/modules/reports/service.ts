import type { Config } from '../../config.ts';
import type { Db } from '../../infra/db.ts';
import { problem } from '../../http/errors.ts';
import { enqueue } from '../../jobs/enqueue.ts';
import { decodeCursor, encodeCursor } from '../../lib/cursor.ts';
import { formatUs } from '../../lib/time.ts';
import { timestampParam } from '../readings/timestamp.ts';
import * as repo from './repository.ts';
import { openReportFile, reportPath } from './file.ts';
import { tokenMatches } from './link.ts';
import type { CreateReportBody, ListReportsQuery, Report, StoredParams } from './schemas.ts';

export const GENERATE_TASK = 'report.generate';
/** A report that fails three times is marked failed (a retry cannot fix a full disk quickly). */
const GENERATE_MAX_ATTEMPTS = 3;
const DAY_US = 86_400e6;
const MAX_UNKNOWN_LISTED = 20;

export type ReportLimits = Pick<Config, 'REPORT_MAX_DEVICES' | 'REPORT_MAX_METRICS' | 'REPORT_MAX_RANGE_DAYS' | 'REPORT_MAX_PENDING'>;

export function toReport(row: repo.ReportRow): Report {
  const p = row.params;
  return {
    id: row.id,
    status: row.status,
    params: {
      ...(p.devices ? { devices: p.devices } : { status: p.status ?? 'any' }),
      metrics: p.metrics,
      from: formatUs(p.from_us),
      to: formatUs(p.to_us),
      ...(p.bucket ? { bucket: p.bucket } : {}),
      format: p.format,
      ...(p.email ? { email: p.email } : {}),
    },
    rows: row.rows,
    bytes: row.bytes,
    created_at: row.created_at.toISOString(),
    finished_at: row.finished_at?.toISOString() ?? null,
    expires_at: row.expires_at?.toISOString() ?? null,
    error: row.error,
  };
}

/** Checks everything that needs no database; returns what reports.params stores. */
export function checkRequest(body: CreateReportBody, limits: ReportLimits): StoredParams {
  if (body.devices && body.status) throw problem('validation', 'Give `devices` or `status`, not both.');
  if (body.devices && body.devices.length > limits.REPORT_MAX_DEVICES) {
    throw problem('validation', `At most ${limits.REPORT_MAX_DEVICES} devices per report.`);
  }
  if (body.metrics.length > limits.REPORT_MAX_METRICS) throw problem('validation', `At most ${limits.REPORT_MAX_METRICS} metrics per report.`);
  const fromUs = timestampParam('from', body.from);
  const toUs = timestampParam('to', body.to);
  if (fromUs >= toUs) throw problem('validation', '`from` must be before `to`.');
  if (toUs - fromUs > limits.REPORT_MAX_RANGE_DAYS * DAY_US) {
    throw problem('validation', `A report covers at most ${limits.REPORT_MAX_RANGE_DAYS} days.`);
  }
  return {
    devices: body.devices ?? null,
    status: body.status === 'active' || body.status === 'inactive' ? body.status : null,
    metrics: body.metrics,
    from_us: fromUs,
    to_us: toUs,
    bucket: body.bucket ?? null,
    format: body.format,
    email: body.email ?? null,
  };
}

/** The report row and its generation job, in one transaction. */
export async function createReport(db: Db, tenantId: number, body: CreateReportBody, limits: ReportLimits): Promise<Report> {
  const params = checkRequest(body, limits);
  return db.tx(async (tx) => {
    // a soft bound (two concurrent requests may both pass): it caps queued work, not exactly
    if ((await repo.countPending(tx, tenantId)) >= limits.REPORT_MAX_PENDING) {
      throw problem('too-many-requests', `At most ${limits.REPORT_MAX_PENDING} reports may be queued or running at once.`, {}, { retryAfterS: 30 });
    }
    if (params.devices) {
      const found = new Set(await repo.existingDevices(tx, tenantId, params.devices));
      const unknown = params.devices.filter((d) => !found.has(d));
      if (unknown.length) {
        throw problem('validation', `Unknown devices: ${unknown.slice(0, MAX_UNKNOWN_LISTED).join(', ')}${unknown.length > MAX_UNKNOWN_LISTED ? ', …' : ''}.`, {
          unknown_devices: unknown.slice(0, MAX_UNKNOWN_LISTED),
        });
      }
    } else {
      const n = await repo.countDevices(tx, tenantId, params.status);
      if (n > limits.REPORT_MAX_DEVICES) {
        throw problem('validation', `The selection has ${n} devices; at most ${limits.REPORT_MAX_DEVICES} per report: list devices or narrow by status.`);
      }
    }
    const row = await repo.insertReport(tx, tenantId, params);
    await enqueue(tx, GENERATE_TASK, { report_id: row.id }, { maxAttempts: GENERATE_MAX_ATTEMPTS });
    return toReport(row);
  });
}

export async function getReport(db: Db, tenantId: number, id: string): Promise<repo.ReportRow> {
  const row = await repo.findReport(db, tenantId, id);
  // another tenant's report is indistinguishable from a missing one
  if (!row) throw problem('not-found', `No report '${id}'.`);
  return row;
}

export async function listReports(db: Db, tenantId: number, q: ListReportsQuery) {
  const after = q.cursor ? decodeCursor(q.cursor, ['number', 'string'] as const) : null;
  if (after && !/^[0-9a-f-]{36}$/.test(after[1])) throw problem('invalid-cursor', 'The cursor is not one this API returned; start again without it.');
  const rows = await repo.listReports(db, tenantId, after, q.limit);
  const last = rows[rows.length - 1];
  return {
    items: rows.map(toReport),
    next_cursor: rows.length === q.limit && last ? encodeCursor([last.created_us, last.id]) : null,
  };
}

/** The ready report's gzip file and the name a download should get. */
export async function openDownload(db: Db, tenantId: number, id: string, reportsDir: string) {
  return openFile(await getReport(db, tenantId, id), reportsDir);
}

/**
 * openDownload for the e-mailed link: no API key, the token is the credential. A wrong
 * token gets the answer of a missing report, so the link reveals nothing about other ids.
 */
export async function openDownloadByToken(db: Db, id: string, token: string, reportsDir: string) {
  const row = await repo.findForLink(db, id);
  if (!row || !tokenMatches(token, row.download_token_hash)) throw problem('not-found', `No report '${id}'.`);
  return openFile(row, reportsDir);
}

async function openFile(row: repo.ReportRow, reportsDir: string) {
  const id = row.id;
  const expired = row.status === 'expired' || (row.expires_at !== null && row.expires_at.getTime() <= Date.now());
  if (expired) throw problem('not-found', `Report '${id}' has expired.`);
  if (row.status !== 'ready') throw problem('conflict', `Report '${id}' is ${row.status}, not ready.`);
  const file = await openReportFile(reportPath(reportsDir, row.id, row.params.format));
  if (!file) throw problem('not-found', `Report '${id}' has expired.`);
  const day = row.created_at.toISOString().slice(0, 10);
  return { ...file, format: row.params.format, filename: `pulse-report-${day}-${row.id.slice(0, 8)}.${row.params.format}` };
}
