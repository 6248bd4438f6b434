import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import pg from 'pg';
import pino from 'pino';
import { ExplainDb, readingsSeqScans } from '../src/infra/explain.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { retryJob } from '../src/jobs/repository.ts';
import { startJobRunner, type JobRunner } from '../src/jobs/runner.ts';
import { CompletionBatcher } from '../src/modules/sessions/completions.ts';
import * as repo from '../src/modules/sessions/repository.ts';
import { toSession } from '../src/modules/sessions/service.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { assertSummaryEqual, rawSummary, type Summary } from './helpers/summaries.ts';
import { startReceiver } from './helpers/receiver.ts';
import { until } from './helpers/wait.ts';

const iso = (ms: number) => new Date(ms).toISOString();
const NO_SESSION = '00000000-0000-4000-8000-000000000000';

type FlushPart = { session_ids: string[] };

/**
 * Summary jobs (both tasks) whose payload names any of `ids`; `parts`: a batch job's
 * payload, one element per flush (a single object: the format before windows).
 */
async function summaryJobs(pool: pg.Pool, ids: string[]) {
  const { rows } = await pool.query<{ task: string; payload: { session_id?: string } | FlushPart | FlushPart[]; key: string | null; run_at: Date; attempts: number; max_attempts: number; last_error: string | null }>(
    `select t.identifier as task, j.payload, j.key, j.run_at, j.attempts, j.max_attempts, j.last_error
       from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
      where t.identifier in ('session.summarize', 'session.summarize_batch')
        and (j.payload->>'session_id' = any($1::text[])
             or exists (select 1
                          from json_array_elements(case json_typeof(j.payload) when 'array' then j.payload else json_build_array(j.payload) end) p,
                               json_array_elements_text(p->'session_ids') e
                         where e = any($1::text[])))`,
    [ids],
  );
  return rows.map((r) => ({ ...r, parts: Array.isArray(r.payload) ? r.payload : 'session_ids' in r.payload ? [r.payload] : [] }));
}

/** Jobs left to run (the per-minute rollups job aside; failed ones stay, with attempts = max_attempts). */
async function runnableJobs(pool: pg.Pool) {
  const { rows } = await pool.query(`select count(*)::int as n from graphile_worker.jobs where task_identifier <> 'rollups.refresh' and attempts < max_attempts`);
  return rows[0].n as number;
}

interface Fixture {
  t: TestApp;
  key: string;
  tenantId: number;
}

/**
 * `n` devices `<prefix>-<i>` with 0–4 readings in their session window (and one on each
 * side of it), each with a session started an hour ago; every other one wants an e-mail.
 */
async function openSessions(f: Fixture, prefix: string, n: number): Promise<string[]> {
  const start = Date.now() - 3_600_000;
  const readings = Array.from({ length: n }, (_, i) => [
    { device: `${prefix}-${i}`, ts: iso(start - 60_000), metrics: { temp: -1000 } },
    ...Array.from({ length: i % 5 }, (_, k) => ({
      device: `${prefix}-${i}`,
      ts: iso(start + (k + 1) * 1000),
      metrics: k % 2 ? { temp: i + k / 4 } : { temp: i - k / 4, rpm: 1000 + k * i },
    })),
    { device: `${prefix}-${i}`, ts: iso(Date.now() + 600_000), metrics: { temp: 1000 } },
  ]).flat();
  const res = await f.t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(f.key), payload: readings });
  assert.equal(res.statusCode, 200, res.body);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const payload = { started_at: iso(start), ...(i % 2 ? {} : { email: `ops-${i}@example.com` }) };
    const s = await f.t.app.inject({ method: 'POST', url: `/v1/devices/${prefix}-${i}/sessions`, headers: bearer(f.key), payload });
    assert.equal(s.statusCode, 201, s.body);
    ids.push(s.json().id);
  }
  return ids;
}

/**
 * Completes `ids` in one flush: the first completion starts a flush at once, so a
 * completion of no session goes first, and `ids` queue behind it while it is in flight.
 */
async function completeInOneFlush(f: Fixture, ids: string[]) {
  const batcher = f.t.app.sessionCompletions;
  const [none, ...rows] = await Promise.all([batcher.complete(f.tenantId, NO_SESSION), ...ids.map((id) => batcher.complete(f.tenantId, id))]);
  assert.equal(none, undefined);
  return rows.map((r) => r!);
}

async function fixture(overrides: Parameters<typeof createTestApp>[0] = {}): Promise<Fixture> {
  const t = await createTestApp(overrides);
  const key = await t.key('batches');
  const { rows } = await t.db.pool.query(`select id::int from tenants where name = 'batches'`);
  return { t, key, tenantId: rows[0].id };
}

describe('session summaries in batches', () => {
  let f: Fixture;
  let runner: JobRunner | null = null;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let mailDir: string;

  before(async () => {
    mailDir = await mkdtemp(join(tmpdir(), 'pulse-mail-'));
    receiver = await startReceiver();
    f = await fixture({ SMTP_URL: '', MAIL_DIR: mailDir, WEBHOOK_ALLOW_PRIVATE: true });
  });
  after(async () => {
    await runner?.stop();
    await f.t.close();
    await receiver.close();
    await rm(mailDir, { recursive: true, force: true });
  });
  /** The session of every session.completed webhook received so far. */
  const hookedSessions = () => receiver.received.map((r) => JSON.parse(r.body).data.id as string);

  const mailsBySession = async () => {
    const counts = new Map<string, number>();
    for (const file of (await readdir(mailDir)).filter((n) => n.endsWith('.eml'))) {
      const id = /Session ([0-9a-f-]{36}) of device/.exec(await readFile(join(mailDir, file), 'utf8'))?.[1];
      assert.ok(id, file);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    return counts;
  };

  it('200 sessions completed in one flush: one batch job, repeats add none; every summary equals raw SQL, announced once', async () => {
    const hook = await f.t.app.inject({ method: 'POST', url: '/v1/webhooks', headers: bearer(f.key), payload: { url: `${receiver.url}/h`, events: ['session.completed'] } });
    assert.equal(hook.statusCode, 201, hook.body);
    const ids = await openSessions(f, 'many', 200);

    const done = await completeInOneFlush(f, ids);
    for (const [i, s] of done.entries()) {
      assert.equal(s.id, ids[i]);
      assert.equal(s.status, 'completing');
      assert.ok(s.completed_us! >= s.started_us);
    }
    let jobs = await summaryJobs(f.t.db.pool, ids);
    assert.equal(jobs.length, 1, 'one job for the whole flush');
    assert.equal(jobs[0]!.task, 'session.summarize_batch');
    assert.equal(jobs[0]!.parts.length, 1, 'one flush');
    assert.deepEqual([...jobs[0]!.parts[0]!.session_ids].sort(), [...ids].sort());

    // repeated, in one flush and over HTTP: the same answers, no second job
    const again = await completeInOneFlush(f, ids);
    assert.deepEqual(again.map((s) => [s.id, s.status, s.completed_us]), done.map((s) => [s.id, s.status, s.completed_us]));
    for (const id of ids.slice(0, 3)) {
      const res = await f.t.app.inject({ method: 'POST', url: `/v1/sessions/${id}/complete`, headers: bearer(f.key) });
      assert.equal(res.statusCode, 202, res.body);
      assert.deepEqual(res.json(), toSession(done[ids.indexOf(id)]!));
    }
    jobs = await summaryJobs(f.t.db.pool, ids);
    assert.equal(jobs.length, 1);

    runner = await startJobRunner({ url: f.t.db.url, config: f.t.config, metrics: createMetrics(), logger: pino({ level: 'silent' }) });
    await until('every summary', async () => {
      const { rows } = await f.t.db.pool.query(`select count(*)::int as n from sessions where id = any($1::uuid[]) and status = 'completed'`, [ids]);
      return rows[0].n === ids.length ? true : undefined;
    });
    for (const id of ids) {
      const res = await f.t.app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers: bearer(f.key) });
      assert.equal(res.json().stale, false);
      assertSummaryEqual(res.json().summary, await rawSummary(f.t.db.pool, id), id);
    }
    const empty = (await f.t.app.inject({ method: 'GET', url: `/v1/sessions/${ids[0]}`, headers: bearer(f.key) })).json().summary;
    assert.deepEqual([empty.readings, empty.metrics], [0, {}], 'a session without readings in its window');

    await until('webhooks and e-mails', async () => ((await runnableJobs(f.t.db.pool)) === 0 && receiver.received.length >= ids.length ? true : undefined));
    const emailed = ids.filter((_, i) => i % 2 === 0);
    const checkAnnouncedOnce = async () => {
      assert.deepEqual(hookedSessions().sort(), [...ids].sort(), 'one session.completed webhook per session');
      const mails = await mailsBySession();
      assert.deepEqual([...mails.keys()].sort(), [...emailed].sort(), 'e-mails to those who asked');
      assert.ok([...mails.values()].every((n) => n === 1), 'one e-mail each');
    };
    await checkAnnouncedOnce();

    // the batch run again (as after a worker crash between its commit and the job's completion): no second announcement
    await f.t.db.pool.query(`select graphile_worker.add_job('session.summarize_batch', json_build_object('session_ids', $1::text[]))`, [ids]);
    await until('the repeated batch', async () => ((await runnableJobs(f.t.db.pool)) === 0 ? true : undefined));
    await checkAnnouncedOnce();
    const { rows } = await f.t.db.pool.query(`select count(*)::int as n from sessions where id = any($1::uuid[]) and status = 'completed' and not stale`, [ids]);
    assert.equal(rows[0].n, ids.length);
  });

  it('a session completed meanwhile by another process is answered as it is now, not as the flush statement’s snapshot saw it', async () => {
    const [id] = await openSessions(f, 'raced', 1);
    // the other process's flush: holds the row until it commits
    const other = await f.t.db.pool.connect();
    try {
      await other.query('begin');
      await other.query(`update sessions set status = 'completing', completed_at = now() where id = $1`, [id]);
      const answer = f.t.app.inject({ method: 'POST', url: `/v1/sessions/${id}/complete`, headers: bearer(f.key) });
      await until('the flush to wait for the row', async () => {
        const r = await f.t.db.pool.query(`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`);
        return r.rows.length ? true : undefined;
      });
      await other.query('commit');
      const res = await answer;
      assert.equal(res.statusCode, 202, res.body);
      assert.equal(res.json().status, 'completing');
      assert.ok(res.json().completed_at);
    } finally {
      other.release();
    }
    assert.deepEqual(await summaryJobs(f.t.db.pool, [id!]), [], 'the flush that did not move it added no job');
  });

  it('property: the set-based summaries equal a raw computation, sessions gone or open left out; readings are read by index', async () => {
    const { rows: sets } = await f.t.db.pool.query<{ id: number; names: string[] }>(
      `insert into metric_sets (names) values ('{a,b,c}'), ('{b}') on conflict (names) do update set names = excluded.names returning id, names`,
    );
    const abc = sets.find((s) => s.names.length === 3)!.id;
    const b = sets.find((s) => s.names.length === 1)!.id;
    const value = fc.option(fc.integer({ min: -4000, max: 4000 }).map((v) => v / 4), { nil: null });
    const session = fc.record({
      // seconds around a 10 s window: before it, on its bounds, inside, after it
      readings: fc.uniqueArray(
        fc.record({ at: fc.integer({ min: -2, max: 12 }), abc: fc.boolean(), vals: fc.tuple(value, value, value) }),
        { selector: (r) => r.at, maxLength: 10 },
      ),
      open: fc.boolean(),
    });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(session, { minLength: 1, maxLength: 6 }), async (sessions) => {
        run++;
        const start = Date.now() - 7_200_000;
        const ids: string[] = [];
        for (const [i, s] of sessions.entries()) {
          const { rows } = await f.t.db.pool.query<{ id: number }>(
            `insert into devices (tenant_id, external_id) values ($1, $2) returning id::int`,
            [f.tenantId, `prop-${run}-${i}`],
          );
          const device = rows[0]!.id;
          for (const r of s.readings) {
            await f.t.db.pool.query(`insert into readings (device_id, ts, metric_set, vals) values ($1, $2, $3, $4::float8[])`, [
              device,
              iso(start + r.at * 1000),
              r.abc ? abc : b,
              r.abc ? r.vals : [r.vals[0]],
            ]);
          }
          const { rows: created } = await f.t.db.pool.query<{ id: string }>(
            `insert into sessions (tenant_id, device_id, started_at, status, completed_at)
             values ($1, $2, $3, $4, $5) returning id::text`,
            [f.tenantId, device, iso(start), s.open ? 'open' : 'completing', s.open ? null : iso(start + 10_000)],
          );
          ids.push(created[0]!.id);
        }
        await f.t.database.api.tx((tx) => repo.summarizeSessions(tx, [...ids, NO_SESSION]));
        const expected = ids.filter((_, i) => !sessions[i]!.open);
        const { rows: stored } = await f.t.db.pool.query<{ id: string; summary: Summary; stale: boolean }>(
          `select id::text, summary, stale from sessions where id = any($1::uuid[]) and status = 'completed'`,
          [ids],
        );
        assert.deepEqual(stored.map((c) => c.id).sort(), [...expected].sort());
        for (const c of stored) {
          assert.equal(c.stale, false);
          assertSummaryEqual(c.summary, await rawSummary(f.t.db.pool, c.id), c.id);
        }
        await f.t.db.pool.query(`delete from readings where device_id in (select id from devices where external_id like $1)`, [`prop-${run}-%`]);
        await f.t.db.pool.query(`delete from devices where external_id like $1`, [`prop-${run}-%`]);
      }),
      { numRuns: 25 },
    );

    const explain = new ExplainDb(f.t.database.api, true);
    const { rows } = await f.t.db.pool.query<{ id: string }>(`select id::text from sessions where status <> 'open' limit 50`);
    await repo.summarizeSessions(explain, rows.map((r) => r.id));
    assert.deepEqual(readingsSeqScans(explain.explained[0]!.plan).filter((n) => (n['Actual Loops'] ?? 0) > 0), []);
  });
});

describe('session summary batches: failure isolation', () => {
  let f: Fixture;
  let runner: JobRunner | null = null;
  before(async () => {
    // two attempts: the poisoned session fails for good after one retry
    f = await fixture({ JOBS_MAX_ATTEMPTS: 2 });
  });
  after(async () => {
    await runner?.stop();
    await f.t.close();
  });

  it('one session whose summary cannot be stored: the batch hands its sessions to per-session jobs; the others complete, it fails after its retries', async () => {
    const ids = await openSessions(f, 'iso', 5);
    const poison = ids[2]!;
    assert.match(poison, /^[0-9a-f-]{36}$/);
    // a database-side failure of this one session's summary, whatever computes it
    await f.t.db.pool.query(`create function test_poison() returns trigger language plpgsql as $$
      begin
        if new.status = 'completed' and new.id = '${poison}' then raise exception 'poisoned session %', new.id; end if;
        return new;
      end $$`);
    await f.t.db.pool.query(`create trigger test_poison before update on sessions for each row execute function test_poison()`);
    try {
      await completeInOneFlush(f, ids);
      const queued = await summaryJobs(f.t.db.pool, ids);
      assert.deepEqual(queued.map((j) => j.task), ['session.summarize_batch']);

      runner = await startJobRunner({ url: f.t.db.url, config: f.t.config, metrics: createMetrics(), logger: pino({ level: 'silent' }) });
      const failed = await until('the poisoned session to fail', async () => {
        const { rows } = await f.t.db.pool.query(`select status, error from sessions where id = $1`, [poison]);
        return rows[0].status === 'failed' ? rows[0] : undefined;
      });
      assert.match(failed.error, /poisoned session/);
      for (const id of ids.filter((id) => id !== poison)) {
        const res = await f.t.app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers: bearer(f.key) });
        assert.equal(res.json().status, 'completed', id);
        assertSummaryEqual(res.json().summary, await rawSummary(f.t.db.pool, id), id);
      }
      await until('no runnable job', async () => ((await runnableJobs(f.t.db.pool)) === 0 ? true : undefined));
      const left = await summaryJobs(f.t.db.pool, ids);
      assert.equal(left.length, 1, 'only the poisoned session’s job is left, failed');
      assert.equal(left[0]!.task, 'session.summarize');
      assert.equal(left[0]!.key, `session.summarize:${poison}`);
      assert.equal(left[0]!.attempts, 2);
      assert.equal(left[0]!.max_attempts, 2);
      assert.match(left[0]!.last_error!, /poisoned session/);
    } finally {
      await f.t.db.pool.query('drop trigger if exists test_poison on sessions');
      await f.t.db.pool.query('drop function if exists test_poison()');
    }

    // once the cause is gone, an admin retry of its job completes it
    const { rows } = await f.t.db.pool.query(`select id::text from graphile_worker.jobs where key = $1`, [`session.summarize:${poison}`]);
    assert.ok(await retryJob(f.t.database.api, rows[0].id));
    const completed = await until<{ status: string; error: string | null; summary: Summary }>('the retried summary', async () => {
      const res = await f.t.app.inject({ method: 'GET', url: `/v1/sessions/${poison}`, headers: bearer(f.key) });
      return res.json().status === 'completed' ? res.json() : undefined;
    });
    assert.equal(completed.error, null);
    assertSummaryEqual(completed.summary, await rawSummary(f.t.db.pool, poison), poison);
  });

  it('a batch job whose payload does not validate is dropped, not retried', async () => {
    const { rows } = await f.t.db.pool.query<{ id: string }>(
      `select (graphile_worker.add_job('session.summarize_batch', '{"session_ids": ["not-a-uuid"]}'::json)).id::text`,
    );
    if (!runner) runner = await startJobRunner({ url: f.t.db.url, config: f.t.config, metrics: createMetrics(), logger: pino({ level: 'silent' }) });
    await until('the job to be gone', async () => {
      const r = await f.t.db.pool.query(`select 1 from graphile_worker.jobs where id = $1`, [rows[0]!.id]);
      return r.rows.length ? undefined : true;
    });
  });
});

describe('session summary windows', () => {
  let f: Fixture;
  let runner: JobRunner | null = null;

  before(async () => {
    // a long window, and polls too rare to find a job within the test: only the due notification can
    f = await fixture({ SESSION_SUMMARY_WINDOW_MS: 5_000, JOBS_POLL_INTERVAL_MS: 60_000, SMTP_URL: '', MAIL_DIR: '' });
  });
  after(async () => {
    await runner?.stop();
    await f.t.close();
  });

  const completedIn = async (ids: string[]) => {
    const { rows } = await f.t.db.pool.query<{ n: number; runs: number }>(
      `select count(*)::int as n, count(distinct summarized_at)::int as runs from sessions where id = any($1::uuid[]) and status = 'completed'`,
      [ids],
    );
    return rows[0]!;
  };

  it('flushes within one window share one batch job, one element per flush; the worker runs it when due, without a poll', async () => {
    runner = await startJobRunner({ url: f.t.db.url, config: f.t.config, metrics: createMetrics(), logger: pino({ level: 'silent' }) });
    // a window boundary may fall between the two flushes (then each has a job of its own): try again
    for (let attempt = 1; ; attempt++) {
      const first = await openSessions(f, `win${attempt}a`, 3);
      const second = await openSessions(f, `win${attempt}b`, 4);
      const startedMs = Date.now();
      await completeInOneFlush(f, first);
      await completeInOneFlush(f, second);
      const jobs = await summaryJobs(f.t.db.pool, [...first, ...second]);
      const all = [...first, ...second];
      if (jobs.length === 1 && jobs[0]!.parts.length === 2) {
        const job = jobs[0]!;
        assert.equal(job.task, 'session.summarize_batch');
        assert.match(job.key!, /^session\.summarize_batch:[0-9a-f]{8}:\d+$/);
        assert.deepEqual(job.parts.map((p) => [...p.session_ids].sort()), [[...first].sort(), [...second].sort()]);
        assert.ok(job.run_at.getTime() > startedMs, 'due at the end of its window, not now');
        assert.deepEqual(await completedIn(all), { n: 0, runs: 0 }, 'nothing summarized before the window ends');
        const done = await until('the window’s summaries', async () => {
          const c = await completedIn(all);
          return c.n === all.length ? c : undefined;
        });
        assert.equal(done.runs, 1, 'in one job run (one transaction)');
        for (const id of all) {
          const res = await f.t.app.inject({ method: 'GET', url: `/v1/sessions/${id}`, headers: bearer(f.key) });
          assertSummaryEqual(res.json().summary, await rawSummary(f.t.db.pool, id), id);
        }
        return;
      }
      assert.ok(attempt < 3, `the two flushes never shared a window: ${JSON.stringify(jobs.map((j) => [j.key, j.parts.length]))}`);
      await until('the split windows’ summaries', async () => ((await completedIn(all)).n === all.length ? true : undefined));
    }
  });

  it('without a window (SESSION_SUMMARY_WINDOW_MS=0) a flush adds a job of its own, due now', async () => {
    const batcher = new CompletionBatcher(f.t.database.api, { maxBatch: 500, maxQueued: 1_000, maxAttempts: 3, summaryWindowMs: 0 }, pino({ level: 'silent' }));
    try {
      const ids = await openSessions(f, 'nowin', 3);
      const beforeMs = Date.now();
      const [none, ...rows] = await Promise.all([batcher.complete(f.tenantId, NO_SESSION), ...ids.map((id) => batcher.complete(f.tenantId, id))]);
      assert.equal(none, undefined);
      assert.deepEqual(rows.map((r) => r!.status), ['completing', 'completing', 'completing']);
      const jobs = await summaryJobs(f.t.db.pool, ids);
      if (jobs.length) {
        // not run yet (the worker of the test above may take it at once)
        assert.equal(jobs.length, 1);
        assert.equal(jobs[0]!.key, null);
        assert.deepEqual([...jobs[0]!.parts[0]!.session_ids].sort(), [...ids].sort());
        assert.ok(jobs[0]!.run_at.getTime() <= Date.now() + 1_000 && jobs[0]!.run_at.getTime() >= beforeMs - 5_000);
      }
      await until('its summaries', async () => ((await completedIn(ids)).n === ids.length ? true : undefined));
    } finally {
      await batcher.close();
    }
  });
});
