import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { JobHelpers } from 'graphile-worker';
import type pg from 'pg';
import pino from 'pino';
import { loadConfig, type Config } from '../src/config.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { enqueue } from '../src/jobs/enqueue.ts';
import { startWorkerHttp } from '../src/jobs/http.ts';
import { dropPartitionsOlderThan } from '../src/jobs/maintenance.ts';
import { startJobRunner, type JobRunner } from '../src/jobs/runner.ts';
import { CompletionBatcher } from '../src/modules/sessions/completions.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { until as waitUntil } from './helpers/wait.ts';
import { freePort } from './helpers/ports.ts';

const BIN = new URL('../bin/pulse.mjs', import.meta.url).pathname;
const log = pino({ level: 'silent' });

interface JobRow {
  id: string;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  locked_by: string | null;
}

const until = <T>(what: string, fn: () => Promise<T | undefined>) => waitUntil(what, fn, 60_000);

describe('job runner', () => {
  let t: TestApp;
  let runner: JobRunner | null = null;
  const calls: { task: string; attempt: number }[] = [];
  let failNext = true;
  const extraTasks = {
    // fails on its first attempt only: a transient failure
    'test.flaky': async (_payload: unknown, helpers: JobHelpers) => {
      calls.push({ task: 'test.flaky', attempt: helpers.job.attempts });
      if (helpers.job.attempts === 1) throw new Error('transient failure');
    },
    // fails until the test lets it succeed
    'test.gated': async () => {
      calls.push({ task: 'test.gated', attempt: 0 });
      if (failNext) throw new Error('the gate is closed');
    },
  };
  const job = async (id: string) =>
    (await t.db.pool.query<JobRow>(`select id::text, attempts, max_attempts, last_error, locked_by from graphile_worker.jobs where id = $1`, [id])).rows[0];

  before(async () => {
    t = await createTestApp();
  });
  after(async () => {
    await runner?.stop();
    await t.close();
  });

  it('a job that fails transiently succeeds on its retry (exponential backoff)', async () => {
    const metrics = createMetrics();
    runner = await startJobRunner({ url: t.db.url, config: t.config, metrics, logger: log, extraTasks });
    const id = await enqueue(t.database.api, 'test.flaky', {}, { maxAttempts: 3 });
    const failed = await until('the first attempt to fail', async () => {
      const j = await job(id);
      return j && j.attempts === 1 && !j.locked_by && j.last_error ? j : undefined;
    });
    assert.match(failed.last_error!, /transient failure/);
    await until('the retry to succeed', async () => ((await job(id)) === undefined ? true : undefined));
    assert.deepEqual(calls.filter((c) => c.task === 'test.flaky').map((c) => c.attempt), [1, 2]);
    const text = await metrics.registry.metrics();
    assert.match(text, /pulse_job_duration_seconds_count\{task="test.flaky",outcome="error"\} 1/);
    assert.match(text, /pulse_job_duration_seconds_count\{task="test.flaky",outcome="ok"\} 1/);
  });

  it('admin: permanently failed jobs stay listed; retry runs them again; non-admin keys get 403', async () => {
    const admin = await t.key('acme', ['admin']);
    const writer = await t.key('acme', ['read', 'write']);
    runner ??= await startJobRunner({ url: t.db.url, config: t.config, metrics: createMetrics(), logger: log, extraTasks });
    const id = await enqueue(t.database.api, 'test.gated', { n: 1 }, { maxAttempts: 1 });
    await until('the job to fail for good', async () => {
      const j = await job(id);
      return j && j.attempts === 1 && !j.locked_by ? true : undefined;
    });

    const list = await t.app.inject({ method: 'GET', url: '/v1/admin/jobs?state=failed&task=test.gated', headers: bearer(admin) });
    assert.equal(list.statusCode, 200, list.body);
    const item = list.json().items.find((j: { id: string }) => j.id === id);
    assert.ok(item, 'the failed job is listed');
    assert.equal(item.state, 'failed');
    assert.equal(item.attempts, 1);
    assert.equal(item.max_attempts, 1);
    assert.match(item.last_error, /the gate is closed/);
    assert.deepEqual(item.payload, { n: 1 });

    const cli = spawnSync(process.execPath, [BIN, 'jobs', 'list', '--state', 'failed'], {
      env: { ...process.env, DATABASE_URL: t.db.url, LOG_LEVEL: 'silent' },
      encoding: 'utf8',
    });
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`^${id}\\ttest.gated\\tfailed\\t1/1\\t`, 'm'));

    assert.equal((await t.app.inject({ method: 'GET', url: '/v1/admin/jobs', headers: bearer(writer) })).statusCode, 403);
    assert.equal((await t.app.inject({ method: 'POST', url: `/v1/admin/jobs/${id}/retry`, headers: bearer(writer) })).statusCode, 403);
    assert.equal((await t.app.inject({ method: 'GET', url: '/v1/admin/jobs?state=bogus', headers: bearer(admin) })).statusCode, 400);
    assert.equal((await job(id))?.attempts, 1, 'refused requests changed nothing');

    failNext = false;
    const retried = await t.app.inject({ method: 'POST', url: `/v1/admin/jobs/${id}/retry`, headers: bearer(admin) });
    assert.equal(retried.statusCode, 200, retried.body);
    assert.equal(retried.json().attempts, 0);
    await until('the retried job to succeed', async () => ((await job(id)) === undefined ? true : undefined));
    const gone = await t.app.inject({ method: 'POST', url: `/v1/admin/jobs/${id}/retry`, headers: bearer(admin) });
    assert.equal(gone.statusCode, 404);
  });

  it('retention drops daily partitions older than RETENTION_DAYS and nothing newer', async () => {
    await t.db.pool.query(`select pulse_ensure_partitions((now() at time zone 'utc')::date - 40, 3)`);
    const dropped = await dropPartitionsOlderThan(t.database.api, 30);
    assert.equal(dropped.length, 3);
    const day = (n: number) => new Date(Date.now() - n * 86_400_000).toISOString().slice(0, 10).replaceAll('-', '');
    assert.deepEqual(dropped, [`readings_${day(40)}`, `readings_${day(39)}`, `readings_${day(38)}`]);
    const left = await t.db.pool.query(`select to_regclass($1) as r`, [`readings_${day(0)}`]);
    assert.notEqual(left.rows[0].r, null, "today's partition stays");
  });
});

describe('job worker readiness', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp();
  });
  after(() => t.close());

  it('/readyz is 503 while jobs wait and none finishes (a stalled worker), and once it stopped', async () => {
    const config: Config = { ...t.config, JOBS_CONCURRENCY: 1, JOBS_POOL_MAX: 3, JOBS_STALL_AFTER_MS: 300, SHUTDOWN_GRACE_MS: 300 };
    const metrics = createMetrics();
    let blocked = false;
    const runner = await startJobRunner({
      url: t.db.url,
      config,
      metrics,
      logger: log,
      extraTasks: {
        // occupies the only slot until the runner aborts it
        'test.block': async (_p: unknown, helpers: JobHelpers) => {
          blocked = true;
          await new Promise((resolve) => helpers.abortSignal.addEventListener('abort', resolve, { once: true }));
        },
        'test.noop': async () => {},
      },
    });
    const server = await startWorkerHttp(runner, metrics, '127.0.0.1', 0);
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      assert.equal((await fetch(`${url}/readyz`)).status, 200);
      await enqueue(t.database.api, 'test.block', {});
      await until('the blocking job to start', async () => (blocked ? true : undefined));
      await enqueue(t.database.api, 'test.noop', {});
      const res = await until('/readyz to report the stall', async () => {
        const r = await fetch(`${url}/readyz`);
        return r.status === 503 ? r : undefined;
      });
      assert.match((await res.json()).detail, /waited/);
      const text = await (await fetch(`${url}/metrics`)).text();
      assert.match(text, /pulse_jobs\{task="test.noop",state="queued"\} 1/);
      assert.match(text, /pulse_jobs\{task="test.block",state="running"\} 1/);
      assert.match(text, /pulse_jobs_oldest_queued_seconds [0-9.]+/);
    } finally {
      await runner.stop();
    }
    const stopped = await fetch(`${url}/readyz`);
    assert.equal(stopped.status, 503);
    assert.match((await stopped.json()).detail, /stopped/);
    await new Promise((r) => server.close(r));
  });
});

describe('pulse worker (real processes)', () => {
  let t: TestApp;
  const children: ChildProcess[] = [];
  before(async () => {
    // a completion's own per-session job (no summary window), found by its key
    t = await createTestApp({ SESSION_SUMMARY_WINDOW_MS: 0 });
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await t.close();
  });

  async function startWorker(): Promise<ChildProcess> {
    const port = await freePort();
    const child = spawn(process.execPath, [BIN, 'worker'], {
      env: {
        ...process.env,
        DATABASE_URL: t.db.url,
        WORKER_PORT: String(port),
        JOBS_RECOVERY_INTERVAL_MS: '200',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.resume();
    child.stderr!.resume();
    children.push(child);
    return child;
  }

  /**
   * Holds the summary mid-job (its first statement waits on a lock of `sessions`), starts a
   * worker, waits until `lockedJob` (a query on the locker's connection) finds the job it
   * took, SIGKILLs it and lets go of the lock; returns the job as it was found.
   */
  async function killWorkerMidJob<R>(lockedJob: (locker: pg.PoolClient) => Promise<R | undefined>): Promise<R> {
    const locker = await t.db.pool.connect();
    let released = false;
    try {
      await locker.query('begin');
      await locker.query('lock table sessions in access exclusive mode');
      const first = await startWorker();
      const locked = await until('the first worker to take the job', () => lockedJob(locker));
      first.kill('SIGKILL');
      await once(first, 'exit');
      await locker.query('rollback');
      released = true;
      return locked;
    } finally {
      if (!released) await locker.query('rollback').catch(() => {});
      locker.release();
    }
  }

  it('a worker SIGKILLed mid-job: after a restart the job runs again and the summary is right', async () => {
    const key = await t.key('acme');
    const h = bearer(key);
    const start = Date.now() - 600_000;
    const readings = [0, 1, 2].map((i) => ({ device: 'crash-1', ts: new Date(start + i * 1000).toISOString(), metrics: { temp: 10 + i } }));
    assert.equal((await t.app.inject({ method: 'POST', url: '/v1/readings', headers: h, payload: readings })).statusCode, 200);
    const s = (await t.app.inject({ method: 'POST', url: '/v1/devices/crash-1/sessions', headers: h, payload: { started_at: new Date(start).toISOString() } })).json();
    assert.equal((await t.app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/complete`, headers: h })).statusCode, 202);

    const locked = await killWorkerMidJob(async (locker) => {
      const r = await locker.query<JobRow>(`select id::text, attempts, locked_by from graphile_worker.jobs where key = $1 and locked_by is not null`, [`session.summarize:${s.id}`]);
      return r.rows[0];
    });
    assert.equal(locked.attempts, 1);
    const still = await t.db.pool.query(`select locked_by from graphile_worker.jobs where key = $1`, [`session.summarize:${s.id}`]);
    assert.ok(still.rows[0]?.locked_by, 'the dead worker still holds the job');

    const second = await startWorker();
    const done = await until('the summary after the restart', async () => {
      const b = (await t.app.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: h })).json();
      return b.status === 'completed' ? b : undefined;
    });
    assert.deepEqual(done.summary.metrics.temp, { count: 3, min: 10, max: 12, avg: 11, first: 10, last: 12 });
    assert.equal(done.summary.readings, 3);
    // the worker marks the job complete right after the summary commits: not in the same transaction
    await until('the job to be completed', async () => {
      const left = await t.db.pool.query(`select count(*)::int as n from graphile_worker.jobs where key = $1`, [`session.summarize:${s.id}`]);
      return left.rows[0].n === 0 ? true : undefined;
    });

    second.kill('SIGTERM');
    const [code] = await once(second, 'exit');
    assert.equal(code, 0, 'a worker stops cleanly on SIGTERM');
  });

  it('the same for a summary window’s batch job: killed mid-job, it runs again after a restart', async () => {
    const key = await t.key('acme');
    const h = bearer(key);
    const start = Date.now() - 600_000;
    const devices = ['wcrash-1', 'wcrash-2'];
    const readings = devices.flatMap((device, d) => [0, 1, 2].map((i) => ({ device, ts: new Date(start + i * 1000).toISOString(), metrics: { temp: 10 * d + i } })));
    assert.equal((await t.app.inject({ method: 'POST', url: '/v1/readings', headers: h, payload: readings })).statusCode, 200);
    const ids: string[] = [];
    for (const device of devices) {
      const res = await t.app.inject({ method: 'POST', url: `/v1/devices/${device}/sessions`, headers: h, payload: { started_at: new Date(start).toISOString() } });
      ids.push(res.json().id);
    }
    // this app runs without a window: completed here through a batcher with one
    const { rows: tenant } = await t.db.pool.query(`select id::int from tenants where name = 'acme'`);
    const batcher = new CompletionBatcher(t.database.api, { maxBatch: 500, maxQueued: 100, maxAttempts: 10, summaryWindowMs: 100 }, pino({ level: 'silent' }));
    await Promise.all(ids.map((id) => batcher.complete(tenant[0].id, id)));
    await batcher.close();
    const jobOf = `select j.id::text, j.attempts, j.locked_by, j.key
                     from graphile_worker._private_jobs j join graphile_worker._private_tasks k on k.id = j.task_id
                    where k.identifier = 'session.summarize_batch' and j.payload::text like '%' || $1 || '%'`;

    const locked = await killWorkerMidJob(async (locker) => {
      const r = await locker.query<JobRow & { key: string }>(`${jobOf} and j.locked_by is not null`, [ids[0]]);
      return r.rows[0];
    });
    assert.match(locked.key, /^session\.summarize_batch:[0-9a-f]{8}:\d+$/);
    assert.equal(locked.attempts, 1);

    const second = await startWorker();
    for (const [d, id] of ids.entries()) {
      const done = await waitUntil('the summary after the restart', async () => {
        const b = (await t.app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers: h })).json();
        return b.status === 'completed' ? b : undefined;
      });
      assert.deepEqual(done.summary.metrics.temp, { count: 3, min: 10 * d, max: 10 * d + 2, avg: 10 * d + 1, first: 10 * d, last: 10 * d + 2 });
    }
    await waitUntil('the job to be completed', async () => ((await t.db.pool.query(jobOf, [ids[0]])).rows.length === 0 ? true : undefined));
    second.kill('SIGTERM');
    await once(second, 'exit');
  });
});

describe('job runner configuration', () => {
  it('refuses a pool too small for its concurrency', async () => {
    const config = loadConfig({}, { JOBS_CONCURRENCY: 8, JOBS_POOL_MAX: 6 });
    await assert.rejects(startJobRunner({ url: 'postgres://unused', config, metrics: createMetrics(), logger: log }), /JOBS_POOL_MAX/);
  });
});
