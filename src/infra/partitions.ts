import type { Db } from './db.ts';

/** Daily readings partitions from `daysBack` ago to `daysAhead` ahead (UTC), created if missing. */
export async function ensurePartitions(db: Db, daysBack: number, daysAhead: number): Promise<number> {
  const rows = await db.query<{ created: number }>(
    'partitions.ensure',
    `select pulse_ensure_partitions((now() at time zone 'utc')::date - $1::int, $1::int + $2::int + 1) as created`,
    [daysBack, daysAhead],
  );
  return rows[0]!.created;
}

/** Partitions for an explicit range of days (seeding, imports of history). */
export async function ensurePartitionsBetween(db: Db, fromUs: number, toUs: number): Promise<number> {
  const rows = await db.query<{ created: number }>(
    'partitions.ensure_between',
    `with d as (
       select ((timestamptz 'epoch' + $1::int8 * interval '1 microsecond') at time zone 'utc')::date as first,
              ((timestamptz 'epoch' + $2::int8 * interval '1 microsecond') at time zone 'utc')::date as last
     )
     select pulse_ensure_partitions(first, last - first + 1) as created from d`,
    [fromUs, toUs],
  );
  return rows[0]!.created;
}
