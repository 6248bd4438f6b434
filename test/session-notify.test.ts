import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createMetrics } from '../src/infra/metrics.ts';
import { startJobRunner, type JobRunner } from '../src/jobs/runner.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { startReceiver } from './helpers/receiver.ts';
import { until } from './helpers/wait.ts';

describe('a completed session notifies (webhook session.completed, e-mail)', () => {
  let t: TestApp;
  let runner: JobRunner;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let mailDir: string;

  before(async () => {
    mailDir = await mkdtemp(join(tmpdir(), 'pulse-mail-'));
    receiver = await startReceiver();
    t = await createTestApp({ SMTP_URL: '', MAIL_DIR: mailDir, WEBHOOK_ALLOW_PRIVATE: true });
    runner = await startJobRunner({ url: t.db.url, config: t.config, metrics: createMetrics(), logger: pino({ level: 'silent' }) });
  });
  after(async () => {
    await runner.stop();
    await t.close();
    await receiver.close();
    await rm(mailDir, { recursive: true, force: true });
  });

  it('delivers one webhook and one e-mail for the first summary, none for a recompute after late readings', async () => {
    const key = await t.key('notify');
    const call = async (method: 'GET' | 'POST', url: string, payload?: unknown) => {
      const res = await t.app.inject({ method, url, headers: bearer(key), ...(payload === undefined ? {} : { payload: payload as object }) });
      return { status: res.statusCode, body: res.json() };
    };
    assert.equal((await call('POST', '/v1/webhooks', { url: `${receiver.url}/hook`, events: ['session.completed'] })).status, 201);
    assert.equal((await call('POST', '/v1/devices', { id: 'n-1' })).status, 201);
    const startedAt = new Date(Date.now() - 60_000).toISOString();
    const session = await call('POST', '/v1/devices/n-1/sessions', { started_at: startedAt, email: 'ops@example.com' });
    assert.equal(session.status, 201, JSON.stringify(session.body));
    const inWindow = new Date(Date.now() - 30_000).toISOString();
    assert.equal((await call('POST', '/v1/readings', [{ device: 'n-1', ts: inWindow, metrics: { t: 5 } }])).status, 200);
    assert.equal((await call('POST', `/v1/sessions/${session.body.id}/complete`)).status, 202);

    const hook = await until('the session.completed webhook', async () => receiver.received[0]);
    assert.equal(hook.headers['x-pulse-event'], 'session.completed');
    const event = JSON.parse(hook.body);
    assert.equal(JSON.stringify(event).includes(session.body.id), true, hook.body);
    assert.equal(JSON.stringify(event).includes('"count":1'), true, hook.body);

    const mail = await until('the e-mail', async () => {
      const files = (await readdir(mailDir)).filter((f) => f.endsWith('.eml'));
      return files.length ? readFile(join(mailDir, files[0]!), 'utf8') : undefined;
    });
    assert.match(mail, /To: ops@example.com/);
    assert.match(mail, /Subject: Session of n-1 completed/);
    assert.match(mail, /t: 1 values, min 5, max 5, avg 5/);

    // a late reading: the summary is recomputed, and that is not announced again
    const late = new Date(Date.now() - 20_000).toISOString();
    const completedAt = (await call('GET', `/v1/sessions/${session.body.id}`)).body.completed_at;
    assert.ok(late < completedAt);
    assert.equal((await call('POST', '/v1/readings', [{ device: 'n-1', ts: late, metrics: { t: 7 } }])).status, 200);
    await until('the recomputed summary', async () => {
      const s = (await call('GET', `/v1/sessions/${session.body.id}`)).body;
      return !s.stale && s.summary?.metrics?.t?.count === 2 ? true : undefined;
    });
    await until('no job left', async () => {
      const { rows } = await t.db.pool.query('select count(*)::int as n from graphile_worker.jobs where task_identifier <> $1', ['rollups.refresh']);
      return rows[0].n === 0 ? true : undefined;
    });
    assert.equal(receiver.received.length, 1, 'one webhook delivery');
    assert.equal((await readdir(mailDir)).filter((f) => f.endsWith('.eml')).length, 1, 'one e-mail');
  });
});
