import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { makeWorkerUtils, type TaskList } from 'graphile-worker';
import pino from 'pino';
import { createMetrics } from '../src/infra/metrics.ts';
import { webhookTasks } from '../src/modules/webhooks/jobs.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { quietGraphileLogger, runJobsOnce } from './helpers/wait.ts';

interface Received {
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A webhook receiver: records every request; never answers under /hang, else with the next queued status (default 200). */
async function startReceiver() {
  const received: Received[] = [];
  const statuses: number[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      if (req.url?.startsWith('/hang')) return; // never answers
      res.writeHead(statuses.shift() ?? 200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    received,
    statuses,
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** What a receiver does (README): recompute the HMAC over "<timestamp>.<raw body>" and compare in constant time. */
function verify(secret: string, headers: IncomingHttpHeaders, body: string): boolean {
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(`${headers['x-pulse-timestamp']}.${body}`).digest('hex')}`);
  const got = Buffer.from(String(headers['x-pulse-signature']));
  return got.length === expected.length && timingSafeEqual(got, expected);
}

const quiet = quietGraphileLogger;


describe('webhooks', () => {
  let t: TestApp;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let tasks: TaskList;
  before(async () => {
    t = await createTestApp({ WEBHOOK_ALLOW_PRIVATE: true });
    receiver = await startReceiver();
    tasks = webhookTasks({ config: { ...t.config, WEBHOOK_TIMEOUT_MS: 1_000 }, database: t.database, metrics: createMetrics(), logger: pino({ level: 'silent' }) });
  });
  after(async () => {
    await receiver.close();
    await t.close();
  });

  const runJobs = async () => {
    await runJobsOnce(t.db.url, tasks, t.db.pool);
  };
  const post = (url: string, payload: unknown, key: string) => t.app.inject({ method: 'POST', url, headers: bearer(key), payload: payload as object });
  const deliveries = async (tenant?: string) =>
    (
      await t.db.pool.query<{ id: string; attempts: number; last_error: string | null; webhook_id: string }>(
        `select j.id::text, j.attempts, j.last_error, p.payload->>'webhook_id' as webhook_id
           from graphile_worker.jobs j join graphile_worker._private_jobs p on p.id = j.id
          where j.task_identifier = 'webhook.deliver'
            and ($1::text is null or (p.payload->>'webhook_id')::uuid in
                 (select w.id from webhooks w join tenants tn on tn.id = w.tenant_id where tn.name = $1))
          order by j.id`,
        [tenant ?? null],
      )
    ).rows;
  const webhookCount = async () => (await t.db.pool.query<{ n: number }>('select count(*)::int as n from webhooks')).rows[0]!.n;
  async function subscribe(key: string, path: string, events: string[]) {
    const res = await post('/v1/webhooks', { url: receiver.url(path), events }, key);
    assert.equal(res.statusCode, 201, res.body);
    return res.json() as { id: string; url: string; events: string[]; secret: string; created_at: string };
  }

  it('creates a webhook: 201 with the secret once; the list never shows it', async () => {
    const key = await t.key('wh-create');
    const hook = await subscribe(key, '/create', ['device.created', 'report.ready']);
    assert.match(hook.secret, /^whsec_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(hook.events, ['device.created', 'report.ready']);
    assert.equal(hook.url, receiver.url('/create'));
    const list = await t.app.inject({ method: 'GET', url: '/v1/webhooks', headers: bearer(key) });
    assert.equal(list.statusCode, 200);
    assert.deepEqual(list.json(), { items: [{ id: hook.id, url: hook.url, events: hook.events, created_at: hook.created_at }] });
    assert.ok(!list.body.includes(hook.secret));
  });

  it('delivers device.created, signed; the receiver verifies the signature', async () => {
    const key = await t.key('wh-deliver');
    const hook = await subscribe(key, '/deliver', ['device.created']);
    const dev = await post('/v1/devices', { id: 'door-1', name: 'Front door' }, key);
    assert.equal(dev.statusCode, 201, dev.body);
    assert.equal((await deliveries('wh-deliver')).length, 1, 'one delivery queued with the device');
    await runJobs();
    const got = receiver.received.filter((r) => r.url === '/deliver');
    assert.equal(got.length, 1);
    const { headers, body } = got[0]!;
    assert.equal(headers['content-type'], 'application/json');
    assert.equal(headers['x-pulse-event'], 'device.created');
    assert.match(String(headers['x-pulse-timestamp']), /^\d{10}$/);
    assert.ok(verify(hook.secret, headers, body), 'signature verifies with the secret');
    assert.ok(!verify('whsec_other', headers, body), 'and not with another secret');
    assert.ok(!verify(hook.secret, headers, body.replace('door-1', 'door-2')), 'nor over a changed body');
    const payload = JSON.parse(body);
    assert.equal(payload.id, headers['x-pulse-delivery']);
    assert.equal(payload.event, 'device.created');
    assert.deepEqual(payload.data, dev.json());
    assert.equal((await deliveries('wh-deliver')).length, 0, 'the job is done');
  });

  it('retries after a 500: the job fails once, then delivers the same delivery again', async () => {
    const key = await t.key('wh-retry');
    const hook = await subscribe(key, '/retry', ['device.created']);
    receiver.statuses.push(500);
    assert.equal((await post('/v1/devices', { id: 'retry-1' }, key)).statusCode, 201);
    await runJobs();
    let jobs = await deliveries('wh-retry');
    assert.equal(jobs.length, 1, 'still queued after the 500');
    assert.equal(jobs[0]!.attempts, 1);
    assert.match(jobs[0]!.last_error ?? '', /answered 500/);
    // the backoff put it seconds ahead: bring it forward rather than wait
    const utils = await makeWorkerUtils({ connectionString: t.db.url, logger: quiet });
    try {
      await utils.rescheduleJobs([jobs[0]!.id], { runAt: new Date() });
    } finally {
      await utils.release();
    }
    await runJobs();
    jobs = await deliveries('wh-retry');
    assert.equal(jobs.length, 0, 'delivered on the second attempt');
    const got = receiver.received.filter((r) => r.url === '/retry');
    assert.equal(got.length, 2);
    assert.equal(got[0]!.headers['x-pulse-delivery'], got[1]!.headers['x-pulse-delivery'], 'same delivery id on the retry');
    assert.equal(got[0]!.body, got[1]!.body, 'same body on the retry');
    assert.ok(verify(hook.secret, got[1]!.headers, got[1]!.body));
  });

  it('does not deliver an event the webhook is not subscribed to', async () => {
    const key = await t.key('wh-nomatch');
    await subscribe(key, '/nomatch', ['report.ready']);
    assert.equal((await post('/v1/devices', { id: 'quiet-1' }, key)).statusCode, 201);
    assert.equal((await deliveries('wh-nomatch')).length, 0, 'nothing queued');
    await runJobs();
    assert.equal(receiver.received.filter((r) => r.url === '/nomatch').length, 0);
  });

  it("does not deliver one tenant's events to another tenant's webhooks", async () => {
    const a = await t.key('wh-tenant-a');
    const b = await t.key('wh-tenant-b');
    await subscribe(b, '/tenant-b', ['device.created']);
    assert.equal((await post('/v1/devices', { id: 'a-1' }, a)).statusCode, 201);
    await runJobs();
    assert.equal(receiver.received.filter((r) => r.url === '/tenant-b').length, 0);
  });

  it('a dead or hanging endpoint fails its own delivery only', async () => {
    const key = await t.key('wh-dead');
    const dead = await post('/v1/webhooks', { url: 'http://127.0.0.1:1/dead', events: ['device.created'] }, key);
    assert.equal(dead.statusCode, 201);
    await subscribe(key, '/hang', ['device.created']);
    await subscribe(key, '/alive', ['device.created']);
    assert.equal((await post('/v1/devices', { id: 'many-1' }, key)).statusCode, 201);
    await runJobs();
    assert.equal(receiver.received.filter((r) => r.url === '/alive').length, 1, 'the live endpoint got its delivery');
    const left = await deliveries('wh-dead');
    assert.equal(left.length, 2, `the dead and the hanging deliveries wait for a retry: ${JSON.stringify(left)}`);
    assert.ok(left.every((j) => j.attempts === 1 && j.last_error));
    assert.ok(left.some((j) => /abort|timeout/i.test(j.last_error!)), left.map((j) => j.last_error).join('; '));
  });

  it('refuses bad input with 400 problem+json and creates nothing', async () => {
    const key = await t.key('wh-bad');
    const before = await webhookCount();
    for (const body of [
      { url: 'ftp://example.com/x', events: ['device.created'] },
      { url: 'javascript:alert(1)', events: ['device.created'] },
      { url: 'not a url', events: ['device.created'] },
      { url: 'https://example.com/x', events: [] },
      { url: 'https://example.com/x', events: ['device.deleted'] },
      { url: 'https://example.com/x', events: ['device.created', 'device.created'] },
      { url: 'https://example.com/x', events: ['device.created'], secret: 'mine' },
      { url: `https://example.com/${'x'.repeat(2100)}`, events: ['device.created'] },
      { events: ['device.created'] },
    ]) {
      const res = await post('/v1/webhooks', body, key);
      assert.equal(res.statusCode, 400, `${JSON.stringify(body).slice(0, 80)}: ${res.body}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    }
    assert.equal(await webhookCount(), before);
  });

  it('allows at most 20 webhooks per tenant (409 beyond)', async () => {
    const key = await t.key('wh-limit');
    for (let i = 0; i < 20; i++) await subscribe(key, `/limit-${i}`, ['report.ready']);
    const res = await post('/v1/webhooks', { url: receiver.url('/limit-21'), events: ['report.ready'] }, key);
    assert.equal(res.statusCode, 409);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
  });

  it('needs the admin scope', async () => {
    const key = await t.key('wh-scope', ['read', 'write']);
    const res = await post('/v1/webhooks', { url: receiver.url('/scope'), events: ['device.created'] }, key);
    assert.equal(res.statusCode, 403);
    assert.equal((await t.app.inject({ method: 'GET', url: '/v1/webhooks', headers: bearer(key) })).statusCode, 403);
  });

  it("deletes a webhook (204); another tenant's is 404; its queued deliveries are dropped", async () => {
    const key = await t.key('wh-delete');
    const other = await t.key('wh-delete-other');
    const hook = await subscribe(key, '/deleted', ['device.created']);
    assert.equal((await post('/v1/devices', { id: 'del-1' }, key)).statusCode, 201);
    const del = (k: string) => t.app.inject({ method: 'DELETE', url: `/v1/webhooks/${hook.id}`, headers: bearer(k) });
    assert.equal((await del(other)).statusCode, 404);
    assert.equal((await del(key)).statusCode, 204);
    assert.equal((await del(key)).statusCode, 404);
    await runJobs();
    assert.equal(receiver.received.filter((r) => r.url === '/deleted').length, 0);
    assert.equal((await deliveries()).filter((j) => j.webhook_id === hook.id).length, 0, 'the job finished without delivering');
  });
});
