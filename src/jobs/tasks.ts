import type { CronItem, TaskList } from 'graphile-worker';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import type { Database } from '../infra/db.ts';
import type { Metrics } from '../infra/metrics.ts';
import { mailTasks } from '../infra/mail.ts';
import { REPORT_EXPIRY_TASK, reportTasks } from '../modules/reports/jobs.ts';
import { ROLLUPS_TASK, rollupTasks } from '../modules/rollups/jobs.ts';
import { sessionTasks } from '../modules/sessions/jobs.ts';
import { webhookTasks } from '../modules/webhooks/jobs.ts';
import { maintenanceTasks, PARTITIONS_TASK, RETENTION_TASK } from './maintenance.ts';

/** What every task factory gets. `database` is the job worker's own (both handles on its pools: the jobs bulkhead). */
export interface JobDeps {
  config: Config;
  database: Database;
  metrics: Metrics;
  logger: Logger;
}

/**
 * The task registry: every module contributes a map of task name → handler; adding a
 * module's tasks is one line here.
 */
export function taskList(deps: JobDeps): TaskList {
  return {
    ...sessionTasks(deps),
    ...maintenanceTasks(deps),
    ...rollupTasks(deps),
    ...reportTasks(deps),
    ...mailTasks(deps),
    ...webhookTasks(deps),
  };
}

/**
 * Recurring jobs. graphile-worker schedules each once per tick across all workers
 * (known_crontabs), so any number of worker processes may run these. No backfill: a
 * missed tick is caught up by the next one.
 */
export function cronItems(config: Config): CronItem[] {
  const options = { backfillPeriod: 0, maxAttempts: config.JOBS_MAX_ATTEMPTS, queueName: 'maintenance' };
  return [
    { task: PARTITIONS_TASK, identifier: PARTITIONS_TASK, match: '7 * * * *', options },
    { task: RETENTION_TASK, identifier: RETENTION_TASK, match: '17 3 * * *', options },
    { task: REPORT_EXPIRY_TASK, identifier: REPORT_EXPIRY_TASK, match: '27 * * * *', options },
    ...(config.ROLLUPS_ENABLED
      ? [{ task: ROLLUPS_TASK, identifier: ROLLUPS_TASK, match: '* * * * *', options: { ...options, queueName: 'rollups' } }]
      : []),
  ];
}
