import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { createMetrics } from '../src/infra/metrics.ts';
import { startJobRunner, type JobRunner } from '../src/jobs/runner.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { assertSummaryEqual, rawSummary } from './helpers/summaries.ts';
import { until } from './helpers/wait.ts';

const iso = (ms: number) => new Date(ms).toISOString();

describe('sessions', () => {
  let t: TestApp;
  let key: string;
  let runner: JobRunner | null = null;
  const log = pino({ level: 'silent' });
  const startRunner = async () => {
    runner = await startJobRunner({ url: t.db.url, config: t.config, metrics: createMetrics(), logger: log });
  };
  const stopRunner = async () => {
    await runner?.stop();
    runner = null;
  };

  before(async () => {
    // per-session summary jobs (no window), found by their key; windows: session-batches.test.ts
    t = await createTestApp({ SESSION_SUMMARY_WINDOW_MS: 0 });
    key = await t.key('acme');
  });
  after(async () => {
    await stopRunner();
    await t.close();
  });

  const post = (url: string, payload?: unknown, k = key) =>
    t.app.inject({ method: 'POST', url, headers: bearer(k), ...(payload === undefined ? {} : { payload: payload as object }) });
  const get = (url: string, k = key) => t.app.inject({ method: 'GET', url, headers: bearer(k) });
  const write = async (device: string, readings: { ts: string; metrics: Record<string, number> }[]) => {
    const res = await post('/v1/readings', readings.map((r) => ({ device, ...r })));
    assert.equal(res.statusCode, 200, res.body);
  };
  const summaryJobs = async (id: string) =>
    (await t.db.pool.query<{ run_at: Date }>(`select run_at from graphile_worker.jobs where key = $1`, [`session.summarize:${id}`])).rows;

  it('starts one open session per device: a second start is 409 problem+json, another tenant sees 404', async () => {
    assert.equal((await post('/v1/devices', { id: 'solo' })).statusCode, 201);
    const first = await post('/v1/devices/solo/sessions');
    assert.equal(first.statusCode, 201, first.body);
    const s = first.json();
    assert.equal(s.status, 'open');
    assert.equal(s.completed_at, null);
    assert.equal(s.summary, null);
    assert.equal(first.headers.location, `/v1/sessions/${s.id}`);

    const second = await post('/v1/devices/solo/sessions', {});
    assert.equal(second.statusCode, 409);
    assert.match(String(second.headers['content-type']), /application\/problem\+json/);
    assert.equal(second.json().session, s.id);

    const other = await t.key('globex');
    assert.equal((await get(`/v1/sessions/${s.id}`, other)).statusCode, 404);
    assert.equal((await post(`/v1/sessions/${s.id}/complete`, undefined, other)).statusCode, 404);
    assert.equal((await post('/v1/devices/solo/sessions', undefined, other)).statusCode, 404);
    assert.equal((await get(`/v1/sessions/${s.id}`)).json().status, 'open', 'unchanged by the other tenant');

    // bad input: 4xx, nothing created
    assert.equal((await post('/v1/devices/nope/sessions')).statusCode, 404);
    assert.equal((await post('/v1/devices/solo/sessions', { started_at: iso(Date.now() + 3_600_000) })).statusCode, 400);
    assert.equal((await get('/v1/sessions/not-a-uuid')).statusCode, 400);
    assert.equal((await get('/v1/sessions/00000000-0000-4000-8000-000000000000')).statusCode, 404);
    const n = await t.db.pool.query(`select count(*)::int as n from sessions`);
    assert.equal(n.rows[0].n, 1);

    // once completed, a new session may start
    assert.equal((await post(`/v1/sessions/${s.id}/complete`)).statusCode, 202);
    assert.equal((await post('/v1/devices/solo/sessions')).statusCode, 201);
  });

  it('completion is idempotent: the same answer, exactly one summary job', async () => {
    assert.equal((await post('/v1/devices', { id: 'idem' })).statusCode, 201);
    const s = (await post('/v1/devices/idem/sessions')).json();
    const answers = await Promise.all([1, 2, 3].map(() => post(`/v1/sessions/${s.id}/complete`)));
    answers.push(await post(`/v1/sessions/${s.id}/complete`));
    for (const res of answers) {
      assert.equal(res.statusCode, 202, res.body);
      assert.equal(res.headers.location, `/v1/sessions/${s.id}`);
      assert.equal(res.json().id, s.id);
      assert.equal(res.json().status, 'completing');
      assert.equal(res.json().completed_at, answers[0]!.json().completed_at);
    }
    assert.equal((await summaryJobs(s.id)).length, 1);
    const all = await t.db.pool.query(
      `select count(*)::int as n from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
        where t.identifier = 'session.summarize' and j.payload->>'session_id' = $1`,
      [s.id],
    );
    assert.equal(all.rows[0].n, 1);
  });

  it('a completion committed while no worker runs is summarised once one starts; the summary equals raw SQL', async () => {
    const now = Date.now();
    const start = now - 3_600_000;
    assert.equal((await post('/v1/devices', { id: 'pump-1' })).statusCode, 201);
    await write('pump-1', [
      { ts: iso(start - 60_000), metrics: { temp: 100, rpm: 1 } }, // before the window
      { ts: iso(start), metrics: { temp: 20.5, rpm: 1000 } }, // on its start
      { ts: iso(start + 60_000), metrics: { temp: 21 } },
      { ts: iso(start + 120_000), metrics: { rpm: 1500, pressure: -3.25 } },
      { ts: iso(start + 180_000), metrics: { temp: 19.75, rpm: 900 } },
      { ts: iso(now + 600_000), metrics: { temp: -50 } }, // after the window (completion is now)
    ]);
    const s = (await post('/v1/devices/pump-1/sessions', { started_at: iso(start) })).json();
    assert.equal(s.started_at, iso(start));
    const done = await post(`/v1/sessions/${s.id}/complete`);
    assert.equal(done.statusCode, 202);
    assert.equal((await summaryJobs(s.id)).length, 1, 'the job is committed with the completion');
    assert.equal((await get(`/v1/sessions/${s.id}`)).json().status, 'completing');

    await startRunner();
    const completed = await until('the summary', async () => {
      const body = (await get(`/v1/sessions/${s.id}`)).json();
      return body.status === 'completed' ? body : undefined;
    });
    assert.equal(completed.stale, false);
    assert.deepEqual(Object.keys(completed.summary.metrics).sort(), ['pressure', 'rpm', 'temp']);
    assert.equal(completed.summary.metrics.temp.first, 20.5);
    assert.equal(completed.summary.metrics.temp.last, 19.75);
    assert.equal(completed.summary.readings, 4);
    assertSummaryEqual(completed.summary, await rawSummary(t.db.pool, s.id));
    assert.equal((await summaryJobs(s.id)).length, 0, 'the job is done');
  });

  it('a late reading marks the summary stale and re-queues it (debounced); the re-summary includes it', async () => {
    const now = Date.now();
    const start = now - 600_000;
    assert.equal((await post('/v1/devices', { id: 'pump-2' })).statusCode, 201);
    await write('pump-2', [{ ts: iso(start + 1000), metrics: { temp: 10 } }]);
    const s = (await post('/v1/devices/pump-2/sessions', { started_at: iso(start) })).json();
    await post(`/v1/sessions/${s.id}/complete`);
    if (!runner) await startRunner();
    await until('the first summary', async () => ((await get(`/v1/sessions/${s.id}`)).json().status === 'completed' ? true : undefined));
    await stopRunner();

    // outside the window: nothing changes
    await write('pump-2', [{ ts: iso(Date.now() + 60_000), metrics: { temp: 99 } }]);
    assert.equal((await get(`/v1/sessions/${s.id}`)).json().stale, false);
    assert.equal((await summaryJobs(s.id)).length, 0);

    // inside the window, through both write paths: JSON (group commit) and an NDJSON import
    await write('pump-2', [{ ts: iso(start + 2000), metrics: { temp: 30 } }]);
    let body = (await get(`/v1/sessions/${s.id}`)).json();
    assert.equal(body.stale, true);
    assert.equal(body.summary.metrics.temp.count, 1, 'the old summary is still shown, flagged stale');
    const jobs = await summaryJobs(s.id);
    assert.equal(jobs.length, 1);
    assert.ok(jobs[0]!.run_at.getTime() > Date.now(), 'debounced: runs a little later');
    const imported = await t.app.inject({
      method: 'POST',
      url: '/v1/readings',
      headers: { ...bearer(key), 'content-type': 'application/x-ndjson' },
      payload: `${JSON.stringify({ device: 'pump-2', ts: iso(start + 3000), metrics: { temp: 50 } })}\n`,
    });
    assert.equal(imported.statusCode, 200, imported.body);
    assert.equal((await summaryJobs(s.id)).length, 1, 'later late readings join the queued re-summary');

    await startRunner();
    body = await until('the re-summary', async () => {
      const b = (await get(`/v1/sessions/${s.id}`)).json();
      return b.stale === false ? b : undefined;
    });
    assert.equal(body.status, 'completed');
    assert.equal(body.summary.metrics.temp.count, 3);
    assert.equal(body.summary.metrics.temp.last, 50);
    assertSummaryEqual(body.summary, await rawSummary(t.db.pool, s.id));
  });

  it('lists a device’s sessions newest first in keyset pages', async () => {
    assert.equal((await post('/v1/devices', { id: 'lister' })).statusCode, 201);
    const ids: string[] = [];
    for (let i = 3; i >= 1; i--) {
      const s = (await post('/v1/devices/lister/sessions', { started_at: iso(Date.now() - i * 60_000) })).json();
      ids.push(s.id);
      assert.equal((await post(`/v1/sessions/${s.id}/complete`)).statusCode, 202);
    }
    const page1 = (await get('/v1/devices/lister/sessions?limit=2')).json();
    assert.deepEqual(page1.items.map((s: { id: string }) => s.id), [ids[2], ids[1]]);
    assert.ok(page1.next_cursor);
    const page2 = (await get(`/v1/devices/lister/sessions?limit=2&cursor=${page1.next_cursor}`)).json();
    assert.deepEqual(page2.items.map((s: { id: string }) => s.id), [ids[0]]);
    assert.equal(page2.next_cursor, null);
    assert.equal((await get('/v1/devices/lister/sessions?cursor=bad')).statusCode, 400);
    assert.equal((await get('/v1/devices/ghost/sessions')).statusCode, 404);
  });
});

describe('session completions: bounded group commit', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp({ SESSION_COMPLETE_QUEUE_MAX: 1, SESSION_SUMMARY_WINDOW_MS: 0 });
  });
  after(() => t.close());

  it('refuses a completion with 503 + Retry-After while the buffer is full, and changes nothing', async () => {
    const key = await t.key('acme');
    const h = bearer(key);
    const ids: string[] = [];
    for (const d of ['a', 'b']) {
      await t.app.inject({ method: 'POST', url: '/v1/devices', headers: h, payload: { id: d } });
      ids.push((await t.app.inject({ method: 'POST', url: `/v1/devices/${d}/sessions`, headers: h })).json().id);
    }
    // hold the first completion's flush on a table lock, so it stays in the buffer
    const locker = await t.db.pool.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table sessions in exclusive mode');
      const first = t.app.inject({ method: 'POST', url: `/v1/sessions/${ids[0]}/complete`, headers: h });
      await until('the first flush to wait on the lock', async () => {
        const r = await t.db.pool.query(`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`);
        return r.rows.length ? true : undefined;
      });
      const refused = await t.app.inject({ method: 'POST', url: `/v1/sessions/${ids[1]}/complete`, headers: h });
      assert.equal(refused.statusCode, 503);
      assert.equal(refused.headers['retry-after'], '1');
      assert.match(String(refused.headers['content-type']), /application\/problem\+json/);
      await locker.query('rollback');
      assert.equal((await first).statusCode, 202);
    } finally {
      locker.release();
    }
    const b = await t.app.inject({ method: 'GET', url: `/v1/sessions/${ids[1]}`, headers: h });
    assert.equal(b.json().status, 'open', 'the refused completion changed nothing');
    const jobs = await t.db.pool.query(`select count(*)::int as n from graphile_worker.jobs where task_identifier = 'session.summarize'`);
    assert.equal(jobs.rows[0].n, 1);
  });
  it('a flush whose job cannot be added answers 503 problem+json and changes nothing: one statement, atomic', async () => {
    const key = await t.key('atomic');
    const h = bearer(key);
    await t.app.inject({ method: 'POST', url: '/v1/devices', headers: h, payload: { id: 'atomic-1' } });
    const s = (await t.app.inject({ method: 'POST', url: '/v1/devices/atomic-1/sessions', headers: h })).json();
    // the job insert fails after the session's update in the same statement
    await t.db.pool.query(`create function test_no_jobs() returns trigger language plpgsql as $$ begin raise exception 'no jobs today'; end $$`);
    await t.db.pool.query(`create trigger test_no_jobs before insert on graphile_worker._private_jobs for each row execute function test_no_jobs()`);
    try {
      const res = await t.app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/complete`, headers: h });
      assert.equal(res.statusCode, 503);
      assert.match(String(res.headers['content-type']), /application\/problem\+json/);
      assert.equal(res.headers['retry-after'], '1');
    } finally {
      await t.db.pool.query('drop trigger test_no_jobs on graphile_worker._private_jobs');
      await t.db.pool.query('drop function test_no_jobs()');
    }
    const after = await t.app.inject({ method: 'GET', url: `/v1/sessions/${s.id}`, headers: h });
    assert.equal(after.json().status, 'open', 'the update rolled back with the failed job insert');
    const jobs = await t.db.pool.query(`select count(*)::int as n from graphile_worker.jobs where key = $1`, [`session.summarize:${s.id}`]);
    assert.equal(jobs.rows[0].n, 0);
    // and the retry the 503 asks for succeeds
    const retried = await t.app.inject({ method: 'POST', url: `/v1/sessions/${s.id}/complete`, headers: h });
    assert.equal(retried.statusCode, 202, retried.body);
    assert.equal(retried.json().status, 'completing');
  });
});
