import type { TaskList } from 'graphile-worker';
import type { Db } from '../infra/db.ts';
import { ensurePartitions } from '../infra/partitions.ts';
import type { JobDeps } from './tasks.ts';

export const PARTITIONS_TASK = 'partitions.ensure';
export const RETENTION_TASK = 'retention';

/** Daily readings partitions kept ready: yesterday (late writes) to a week ahead. */
export const PARTITION_DAYS_BACK = 1;
export const PARTITION_DAYS_AHEAD = 7;

const PARTITION_NAME = /^readings_\d{8}$/;

/** Drops the daily readings partitions of days before today (UTC) − `days`; returns their names. */
export async function dropPartitionsOlderThan(db: Db, days: number): Promise<string[]> {
  const rows = await db.query<{ name: string }>(
    'retention.expired_partitions',
    `select c.relname as name
       from pg_inherits i join pg_class c on c.oid = i.inhrelid
      where i.inhparent = 'readings'::regclass and c.relname ~ '^readings_[0-9]{8}$'
        and to_date(substr(c.relname, 10), 'YYYYMMDD') < (now() at time zone 'utc')::date - $1::int
      order by 1`,
    [days],
  );
  const dropped: string[] = [];
  for (const { name } of rows) {
    if (!PARTITION_NAME.test(name)) continue;
    // one partition per statement: each holds its lock on readings only briefly
    await db.query('retention.drop_partition', `drop table if exists "${name}"`);
    dropped.push(name);
  }
  return dropped;
}

export function maintenanceTasks(deps: JobDeps): TaskList {
  const db = deps.database.api;
  return {
    [PARTITIONS_TASK]: async () => {
      const created = await ensurePartitions(db, PARTITION_DAYS_BACK, PARTITION_DAYS_AHEAD);
      if (created) deps.logger.info({ created }, 'readings partitions created');
    },
    [RETENTION_TASK]: async () => {
      const dropped = await dropPartitionsOlderThan(db, deps.config.RETENTION_DAYS);
      if (dropped.length) deps.logger.info({ dropped, retentionDays: deps.config.RETENTION_DAYS }, 'readings partitions dropped');
    },
  };
}
