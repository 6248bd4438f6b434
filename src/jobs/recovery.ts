import pg from 'pg';
import type { Logger } from 'pino';
import type { Db } from '../infra/db.ts';

/** Advisory-lock namespace (first key) of the liveness locks: a constant no other lock of pulse uses. */
const LIVENESS_CLASS = 1_409_553_179;

/**
 * graphile-worker releases the jobs of a worker that died only after 4 hours. pulse
 * releases them as soon as the worker's process is gone: each worker pool holds a
 * session advisory lock named after its pool id (the jobs' locked_by) on a connection of
 * its own, which PostgreSQL drops with the process (SIGKILL, crash, lost host). A sweep
 * then force-unlocks the jobs of every pool whose lock nobody holds.
 *
 * A pool takes jobs a moment before its lock is granted, so only jobs locked longer
 * than GRACE are considered. Every graphile-worker pool on the database must be pulse's
 * (one without the lock would be taken for dead).
 */
const GRACE = '5 seconds';

export class Liveness {
  private constructor(private readonly client: pg.Client) {}

  static async connect(url: string, log: Logger, onLost: (err: Error) => void): Promise<Liveness> {
    const client = new pg.Client({ connectionString: url, application_name: 'pulse-jobs-liveness' });
    client.on('error', (err) => {
      log.error({ err }, 'job worker liveness connection lost');
      onLost(err);
    });
    await client.connect();
    return new Liveness(client);
  }

  /** Marks a worker pool as alive for as long as this process (this connection) lives. */
  async hold(poolId: string): Promise<void> {
    await this.client.query('select pg_advisory_lock($1::int, hashtext($2::text))', [LIVENESS_CLASS, poolId]);
  }

  /**
   * Also listens on this connection (one per worker process already): `onPayload` gets the
   * payload of each notification on `channel`.
   */
  async listen(channel: string, onPayload: (payload: string | undefined) => void): Promise<void> {
    this.client.on('notification', (msg) => {
      if (msg.channel === channel) onPayload(msg.payload);
    });
    await this.client.query(`listen ${channel}`);
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => {});
  }
}

/** Releases the jobs (and named queues) locked by worker pools that no longer live; returns those pools. */
export async function releaseJobsOfDeadWorkers(db: Db): Promise<string[]> {
  const rows = await db.query<{ dead: string[] }>(
    'jobs.release_dead',
    `with owners as (
       select locked_by as id from graphile_worker._private_jobs
        where locked_by is not null and locked_at < now() - interval '${GRACE}'
       union
       select locked_by from graphile_worker._private_job_queues
        where locked_by is not null and locked_at < now() - interval '${GRACE}'
     ), dead as (
       select o.id from owners o
        where not exists (
          select 1 from pg_locks l
           where l.locktype = 'advisory' and l.granted and l.objsubid = 2
             and l.classid = $1::int::oid and l.objid = hashtext(o.id)::oid)
     )
     select array(select id from dead order by id) as dead,
            graphile_worker.force_unlock_workers(array(select id from dead)) as released`,
    [LIVENESS_CLASS],
  );
  return rows[0]!.dead;
}
