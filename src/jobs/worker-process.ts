import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { createMetrics } from '../infra/metrics.ts';
import { migrate } from '../infra/migrate.ts';
import { openDatabase } from '../start/database.ts';
import { onSignals } from '../start/server.ts';
import { startWorkerHttp } from './http.ts';
import { startJobRunner } from './runner.ts';

/**
 * `pulse worker`: only the job worker, as a process of its own (scale jobs apart from the
 * API), with /healthz, /readyz and /metrics on WORKER_PORT. Exits non-zero if the worker
 * stops by itself, so a supervisor restarts it.
 */
export async function runWorkerProcess(config: Config, log: Logger): Promise<void> {
  const db = await openDatabase(config, log);
  try {
    if (config.MIGRATE_ON_START) await migrate(db.url);
  } catch (err) {
    await db.release();
    throw err;
  }
  const metrics = createMetrics();
  const runner = await startJobRunner({ url: db.url, config, metrics, logger: log });
  const server = await startWorkerHttp(runner, metrics, config.HOST, config.WORKER_PORT);
  log.info({ port: config.WORKER_PORT, concurrency: config.JOBS_CONCURRENCY }, 'job worker started');
  let stopping = false;
  void runner.done.then(async () => {
    if (stopping) return;
    log.error('job worker stopped unexpectedly; exiting');
    server.close();
    await db.release();
    process.exit(1);
  });
  onSignals(
    async () => {
      stopping = true;
      await runner.stop(); // running jobs finish (or are aborted after SHUTDOWN_GRACE_MS)
      await new Promise((resolve) => server.close(resolve));
      await db.release();
    },
    log,
    config.SHUTDOWN_GRACE_MS,
  );
}
