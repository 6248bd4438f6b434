import { rm } from 'node:fs/promises';
import type { TaskList } from 'graphile-worker';
import type pg from 'pg';
import type { Logger } from 'pino';
import { Value } from 'typebox/value';
import type { Config } from '../../config.ts';
import type { Database } from '../../infra/db.ts';
import { enqueueMail } from '../../infra/mail.ts';
import type { Metrics } from '../../infra/metrics.ts';
import { emitEvent } from '../webhooks/service.ts';
import * as repo from './repository.ts';
import { reportPath, writeReportFile } from './file.ts';
import { downloadLink, newDownloadToken } from './link.ts';
import { GeneratePayload } from './schemas.ts';
import { GENERATE_TASK, toReport } from './service.ts';

export interface ReportDeps {
  config: Config;
  database: Database;
  metrics: Metrics;
  logger: Logger;
}

export const REPORT_EXPIRY_TASK = 'report.expire';
const EXPIRE_BATCH = 500;
/** What a client sees of a failure; the cause goes to the log, not the API. */
const FAILED_MESSAGE = 'The report could not be generated.';

/**
 * `report.generate` and `report.expire` (REPORT_EXPIRY_TASK: schedule it, e.g. hourly).
 * Short statements use the API pool; the long COPY runs on a connection of the job
 * system's own pool (helpers.withPgClient), so it holds no API connection and is not cut
 * by the API's statement_timeout.
 */
export function reportTasks(deps: ReportDeps): TaskList {
  const { config, database, metrics, logger } = deps;
  const db = database.api;

  return {
    [GENERATE_TASK]: async (payload, helpers) => {
      if (!Value.Check(GeneratePayload, payload)) {
        logger.error({ payload }, `${GENERATE_TASK}: invalid payload, dropped`);
        return;
      }
      const report = await repo.startReport(db, payload.report_id);
      if (!report) return; // finished or expired already: a duplicate or late job
      const p = report.params;
      try {
        const devices = await repo.reportDevices(db, report.tenant_id, p.devices, p.status);
        const sets = await repo.metricSetsWith(db, p.metrics);
        const spec = { metrics: p.metrics, fromUs: p.from_us, toUs: p.to_us, bucket: p.bucket, format: p.format, sets };
        const path = reportPath(config.REPORTS_DIR, report.id, p.format);
        const { rows, bytes } = await helpers.withPgClient((client) =>
          writeReportFile(client as pg.ClientBase, devices, spec, path, helpers.abortSignal),
        );
        // a link token only when a mail hands it out; stored with the status it unlocks
        const mail = p.email ? { to: p.email, ...newDownloadToken() } : null;
        await db.tx(async (tx) => {
          const ready = toReport(await repo.markReady(tx, report.id, rows, bytes, config.REPORT_TTL_DAYS, mail?.hash ?? null));
          await emitEvent(tx, report.tenant_id, 'report.ready', ready);
          if (mail) await enqueueMail(tx, readyMail(config.PUBLIC_URL, mail.to, ready, mail.token));
        });
        metrics.reports.inc({ outcome: 'ready' });
      } catch (err) {
        const final = helpers.job.attempts >= helpers.job.max_attempts;
        logger.error({ err, report: report.id, attempt: helpers.job.attempts, final }, 'report generation failed');
        await repo.markAttemptFailed(db, report.id, FAILED_MESSAGE, final);
        metrics.reports.inc({ outcome: final ? 'failed' : 'retried' });
        throw err;
      }
    },

    [REPORT_EXPIRY_TASK]: async () => {
      for (;;) {
        const due = await repo.dueForExpiry(db, EXPIRE_BATCH);
        if (!due.length) return;
        // files first: a crash between the two leaves a row that the next sweep finishes
        await Promise.all(due.map((r) => rm(reportPath(config.REPORTS_DIR, r.id, r.format), { force: true })));
        metrics.reports.inc({ outcome: 'expired' }, await repo.markExpired(db, due.map((r) => r.id)));
        if (due.length < EXPIRE_BATCH) return;
      }
    },
  };
}

/** `token`: the link token whose hash markReady stored (the mail is the only place it exists). */
export function readyMail(publicUrl: string, to: string, report: ReturnType<typeof toReport>, token: string) {
  return {
    to,
    subject: `Your pulse report is ready (${report.params.format.toUpperCase()}, ${report.rows} rows)`,
    text: [
      'Your report is ready.',
      '',
      `Download: ${downloadLink(publicUrl, report.id, token)}`,
      '(no API key needed until the report expires; anyone who has this link can',
      'download the report, so do not forward it)',
      '',
      `Rows: ${report.rows}`,
      `Range: ${report.params.from} to ${report.params.to}`,
      `Available until: ${report.expires_at}`,
      '',
      `Report ${report.id}`,
    ].join('\n'),
  };
}
