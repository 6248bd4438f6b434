import cluster from 'node:cluster';
import type { Logger } from 'pino';
import { buildApp } from '../app.ts';
import type { Config } from '../config.ts';
import { joinClusterMetrics, serveClusterMetrics } from '../infra/cluster-metrics.ts';
import { Database } from '../infra/db.ts';
import { createMetrics, type Metrics } from '../infra/metrics.ts';
import { migrate } from '../infra/migrate.ts';
import { ensurePartitions } from '../infra/partitions.ts';
import { PARTITION_DAYS_AHEAD, PARTITION_DAYS_BACK } from '../jobs/maintenance.ts';
import { startJobRunner } from '../jobs/runner.ts';
import { openDatabase } from './database.ts';

/** Migrations and partitions: done once, by the process that owns the database handle. */
async function prepareDatabase(url: string, config: Config, log: Logger) {
  if (config.MIGRATE_ON_START) {
    const applied = await migrate(url);
    if (applied.length) log.info({ applied }, 'migrations applied');
  }
}

export function onSignals(handler: (signal: string) => Promise<void>, log: Logger, graceMs: number) {
  let stopping = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      // a hung close must not keep the process alive forever
      setTimeout(() => {
        log.error('shutdown grace period exceeded, exiting');
        process.exit(1);
      }, graceMs + 5_000).unref();
      handler(signal).then(
        () => process.exit(0),
        (err) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
}

/** One HTTP process: pools, app, listen. Returns when listening. */
async function serveOne(url: string, config: Config, log: Logger, release: () => Promise<void>, metrics: Metrics = createMetrics()) {
  const database = new Database(url, config, metrics, log);
  const created = await ensurePartitions(database.api, PARTITION_DAYS_BACK, PARTITION_DAYS_AHEAD);
  if (created) log.info({ created }, 'readings partitions created');
  const app = await buildApp({ config, database, metrics, logger: log });
  app.server.maxConnections = config.MAX_CONNECTIONS;
  // the in-process job worker (its own pool): `npm start` is a complete single-node system.
  // Started before listening, so a process that answers /readyz has its signal handlers.
  const jobs = config.JOBS_IN_SERVE ? await startJobRunner({ url, config, metrics, logger: log }) : null;
  onSignals(
    async () => {
      await app.close(); // stop accepting; in-flight requests finish
      await jobs?.stop(); // running jobs finish (or are aborted after SHUTDOWN_GRACE_MS)
      await database.close();
      await release();
    },
    log,
    config.SHUTDOWN_GRACE_MS,
  );
  await app.listen({ host: config.HOST, port: config.PORT });
  return app;
}

/**
 * `pulse serve`: one process, or with workers > 1 a node:cluster primary that owns the
 * database (embedded server, migrations) and keeps N HTTP workers on one port, replacing
 * any that crash.
 */
export async function serve(config: Config, log: Logger, workers = config.WORKERS): Promise<void> {
  if (cluster.isWorker) {
    // /metrics answers for the cluster: the primary gathers every worker's registry
    const metrics = createMetrics();
    joinClusterMetrics(metrics.registry);
    await serveOne(config.DATABASE_URL, config, log, async () => {}, metrics);
    return;
  }
  const db = await openDatabase(config, log);
  try {
    await prepareDatabase(db.url, config, log);
  } catch (err) {
    await db.release();
    throw err;
  }
  if (workers <= 1) {
    await serveOne(db.url, config, log, db.release);
    return;
  }
  serveClusterMetrics(log);
  let stopping = false;
  const env = { DATABASE_URL: db.url, MIGRATE_ON_START: 'false' };
  // one job worker in total: in the first HTTP worker, and in whichever replaces it
  const jobsIn = new Set<number>();
  const fork = (jobs: boolean) => {
    const w = cluster.fork({ ...env, JOBS_IN_SERVE: String(jobs && config.JOBS_IN_SERVE) });
    if (jobs) jobsIn.add(w.id);
  };
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    log.error({ pid: worker.process.pid, code, signal }, 'worker died; starting a replacement');
    fork(jobsIn.delete(worker.id));
  });
  for (let i = 0; i < workers; i++) fork(i === 0);
  log.info({ workers, port: config.PORT }, 'cluster started');
  onSignals(
    async () => {
      stopping = true;
      const exits = Object.values(cluster.workers ?? {}).map(
        (w) => new Promise<void>((resolve) => {
          if (!w || w.isDead()) return resolve();
          w.once('exit', () => resolve());
          w.process.kill('SIGTERM');
        }),
      );
      await Promise.all(exits);
      await db.release();
    },
    log,
    config.SHUTDOWN_GRACE_MS,
  );
}
