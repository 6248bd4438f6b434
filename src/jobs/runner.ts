import { EventEmitter } from 'node:events';
import client from 'prom-client';
import {
  Logger as GraphileLogger,
  parseCronItems,
  run,
  type JobHelpers,
  type Runner,
  type Task,
  type TaskList,
  type WorkerEvents,
  type WorkerPool,
} from 'graphile-worker';
import type { Logger } from 'pino';
import { ConfigError, type Config } from '../config.ts';
import { Database } from '../infra/db.ts';
import type { Metrics } from '../infra/metrics.ts';
import { DueWakeups, JOBS_DUE_CHANNEL } from './due.ts';
import { Liveness, releaseJobsOfDeadWorkers } from './recovery.ts';
import * as queue from './repository.ts';
import { cronItems, taskList, type JobDeps } from './tasks.ts';

export interface JobRunnerOptions {
  url: string;
  config: Config;
  /** The process's metrics: job durations and queue gauges are reported there. */
  metrics: Metrics;
  logger: Logger;
  /** Tasks beyond the registry's (tests). */
  extraTasks?: TaskList;
}

export interface Readiness {
  ok: boolean;
  detail?: string;
}

export interface JobRunner {
  /** Stops taking jobs and waits for running ones (aborted after SHUTDOWN_GRACE_MS). */
  stop(): Promise<void>;
  /** Not ready when stopped, or when a runnable job has waited past JOBS_STALL_AFTER_MS and no job finished meanwhile. */
  readiness(): Promise<Readiness>;
  /** Settles when the runner stops, for whatever reason. */
  readonly done: Promise<void>;
}

/**
 * The job worker's own Database: its pools are the jobs bulkhead (JOBS_POOL_MAX, shared
 * with graphile-worker's own queries), never the API's or ingest's. Its query timings go to
 * the process's histogram labelled pool="jobs"; its pool gauge goes to a registry of its
 * own, since the API's Database in the same process already registers that metric name.
 */
function jobsDatabase(url: string, config: Config, metrics: Metrics, log: Logger): Database {
  const jobsConfig: Config = {
    ...config,
    DB_QUERY_POOL_MAX: config.JOBS_POOL_MAX,
    DB_INGEST_POOL_MAX: 1,
    DB_POOL_MIN: 0,
    DB_STATEMENT_TIMEOUT_MS: config.JOBS_STATEMENT_TIMEOUT_MS,
  };
  const dbQueries = {
    observe: (labels: Record<string, string>, seconds: number) => metrics.dbQueries.observe({ ...labels, pool: 'jobs' }, seconds),
  };
  const view = { ...metrics, registry: new client.Registry(), dbQueries } as unknown as Metrics;
  const database = new Database(url, jobsConfig, view, log);
  for (const pool of Object.values(database.pools)) {
    // a checked-out connection that breaks (server restart) during a long job must not crash the process
    pool.on('connect', (conn) => conn.on('error', (err) => log.warn({ err }, 'job database connection failed')));
  }
  return database;
}

function graphileLogger(log: Logger) {
  // graphile-worker logs every job at info: that is debug at pulse's rates
  return new GraphileLogger((scope) => (level, message, meta) => {
    const fn = level === 'error' ? 'error' : level === 'warning' ? 'warn' : 'debug';
    log[fn]({ scope, ...meta }, message);
  });
}

/** Job durations by task and outcome, and the time the last job finished (for readiness). */
function instrument(tasks: TaskList, metrics: Metrics, finished: { at: number }): TaskList {
  return Object.fromEntries(
    Object.entries(tasks).map(([name, task]) => [
      name,
      async (payload: unknown, helpers: JobHelpers) => {
        const started = performance.now();
        let outcome = 'ok';
        try {
          await (task as Task)(payload, helpers);
        } catch (err) {
          outcome = 'error';
          throw err;
        } finally {
          metrics.jobDuration.observe({ task: name, outcome }, (performance.now() - started) / 1000);
          finished.at = Date.now();
        }
      },
    ]),
  );
}

/**
 * A graphile-worker runner with the registry's tasks and cron items, on a pool of its
 * own. Retries back off exponentially (graphile-worker: e^attempts seconds). Jobs left
 * locked by a worker process that died are released within JOBS_RECOVERY_INTERVAL_MS
 * (see recovery.ts), so they run again.
 */
export async function startJobRunner(opts: JobRunnerOptions): Promise<JobRunner> {
  const { config, metrics, logger } = opts;
  if (config.JOBS_POOL_MAX < config.JOBS_CONCURRENCY + 2) {
    // one connection listens for new jobs, one fetches and completes them
    throw new ConfigError('JOBS_POOL_MAX', `must be at least JOBS_CONCURRENCY + 2 (${config.JOBS_CONCURRENCY + 2})`);
  }
  const log = logger.child({ component: 'jobs' });
  const database = jobsDatabase(opts.url, config, metrics, log);
  const deps: JobDeps = { config, database, metrics, logger: log };
  const finished = { at: Date.now() };
  const tasks = instrument({ ...taskList(deps), ...opts.extraTasks }, metrics, finished);
  const names = Object.keys(tasks);

  let runner: Runner | null = null;
  const liveness = await Liveness.connect(opts.url, log, () => void runner?.stop('liveness connection lost').catch(() => {}));
  const events = new EventEmitter() as WorkerEvents;
  const held: Promise<void>[] = [];
  const pools: WorkerPool[] = [];
  events.on('pool:create', ({ workerPool }) => {
    pools.push(workerPool);
    held.push(liveness.hold(workerPool.id));
  });
  const wakeups = new DueWakeups(() => {
    for (const pool of pools) pool.nudge(1);
  });
  try {
    await liveness.listen(JOBS_DUE_CHANNEL, (payload) => wakeups.due(payload));
    runner = await run({
      pgPool: database.pools.query,
      concurrency: config.JOBS_CONCURRENCY,
      pollInterval: config.JOBS_POLL_INTERVAL_MS,
      noHandleSignals: true, // pulse's entry points own the signals
      gracefulShutdownAbortTimeout: config.SHUTDOWN_GRACE_MS,
      taskList: tasks,
      parsedCronItems: parseCronItems(cronItems(config)),
      logger: graphileLogger(log),
      events,
    });
    await Promise.all(held);
  } catch (err) {
    wakeups.clear();
    await runner?.stop().catch(() => {});
    await liveness.close();
    await database.close();
    throw err;
  }
  const started = runner;

  let stopped = false;
  const done = started.promise.then(
    () => {},
    (err: unknown) => log.error({ err }, 'job worker stopped with an error'),
  );
  void done.finally(() => (stopped = true));

  const sweep = async () => {
    try {
      const dead = await releaseJobsOfDeadWorkers(database.api);
      if (dead.length) log.warn({ workers: dead }, 'released jobs of dead workers; they run again');
    } catch (err) {
      log.error({ err }, 'releasing jobs of dead workers failed');
    }
  };
  await sweep();
  const timer = setInterval(() => void sweep(), config.JOBS_RECOVERY_INTERVAL_MS);
  timer.unref();

  // queue state for /metrics, read at most once per second however many gauges ask
  let cached: { at: number; value: ReturnType<typeof queue.snapshot> } | null = null;
  metrics.jobsSource.snapshot = () => {
    if (stopped) return Promise.resolve(null);
    if (!cached || Date.now() - cached.at > 1000) cached = { at: Date.now(), value: queue.snapshot(database.api) };
    return cached.value.catch(() => null);
  };

  let stopping: Promise<void> | null = null;
  return {
    done,
    stop() {
      stopping ??= (async () => {
        clearInterval(timer);
        wakeups.clear();
        metrics.jobsSource.snapshot = async () => null;
        if (!stopped) await started.stop('pulse is stopping').catch((err: unknown) => log.error({ err }, 'job worker stop failed'));
        await done;
        await liveness.close();
        await database.close();
      })();
      return stopping;
    },
    async readiness() {
      if (stopped) return { ok: false, detail: 'the job worker has stopped' };
      try {
        const waitedS = await queue.oldestRunnableAge(database.api, names);
        const idleMs = Date.now() - finished.at;
        if (waitedS !== null && waitedS * 1000 > config.JOBS_STALL_AFTER_MS && idleMs > config.JOBS_STALL_AFTER_MS) {
          return { ok: false, detail: `a job has waited ${Math.round(waitedS)} s and no job finished for ${Math.round(idleMs / 1000)} s` };
        }
        return { ok: true };
      } catch {
        return { ok: false, detail: 'database unreachable' };
      }
    },
  };
}
