import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import type { TaskList } from 'graphile-worker';
import { createMetrics } from '../src/infra/metrics.ts';
import { webhookTasks } from '../src/modules/webhooks/jobs.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { startReceiver } from './helpers/receiver.ts';
import { runJobsOnce } from './helpers/wait.ts';
import { ndjson, statementCounts } from './helpers/statements.ts';

type Receiver = Awaited<ReturnType<typeof startReceiver>>;
type Line = { device: string; ts?: number; metrics: Record<string, number> };


/**
 * Devices created implicitly by writes (tenants with auto_create_devices) announce
 * themselves with `device.created`, exactly as POST /v1/devices does: one event per
 * device the write inserted, queued in the write's transaction.
 */
describe('device.created for devices auto-created by writes', () => {
  let t: TestApp;
  let tasks: TaskList;
  before(async () => {
    t = await createTestApp({ WEBHOOK_ALLOW_PRIVATE: true });
    tasks = webhookTasks({ config: { ...t.config, WEBHOOK_TIMEOUT_MS: 2_000 }, database: t.database, metrics: createMetrics(), logger: pino({ level: 'silent' }) });
  });
  after(async () => {
    await t.close();
  });

  const runJobs = () => runJobsOnce(t.db.url, tasks, t.db.pool);
  const call = (key: string, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown) =>
    t.app.inject({ method, url, headers: bearer(key), ...(payload === undefined ? {} : { payload: payload as object }) });
  const importNdjson = (key: string, body: string) =>
    t.app.inject({ method: 'POST', url: '/v1/readings', headers: { ...bearer(key), 'content-type': 'application/x-ndjson' }, payload: body });
  /** Deliveries of the webhook still queued. */
  const queued = async (hookId: string) =>
    (
      await t.db.pool.query<{ n: number }>(
        `select count(*)::int as n from graphile_worker.jobs j join graphile_worker._private_jobs p on p.id = j.id
          where j.task_identifier = 'webhook.deliver' and p.payload->>'webhook_id' = $1`,
        [hookId],
      )
    ).rows[0]!.n;
  const devicesOf = async (tenant: string) =>
    (
      await t.db.pool.query<{ external_id: string }>(
        'select d.external_id from devices d join tenants tn on tn.id = d.tenant_id where tn.name = $1 order by 1',
        [tenant],
      )
    ).rows.map((r) => r.external_id);
  /** The device.created events the receiver got, as parsed bodies. */
  const events = (receiver: Receiver) =>
    receiver.received.map((r) => {
      assert.equal(r.headers['x-pulse-event'], 'device.created');
      return JSON.parse(r.body) as { id: string; event: string; created_at: string; data: Record<string, unknown> };
    });

  /**
   * A tenant with an admin key, a receiver and a webhook on device.created; `fn` runs with
   * them, then the devices it names, the webhook and the receiver are removed.
   */
  async function withTenant(
    tenant: string,
    fn: (ctx: { key: string; receiver: Receiver; hookId: string; cleanup: string[] }) => Promise<void>,
  ) {
    const key = await t.key(tenant);
    const receiver = await startReceiver();
    const cleanup: string[] = [];
    let hookId = '';
    try {
      const hook = await call(key, 'POST', '/v1/webhooks', { url: `${receiver.url}/hook`, events: ['device.created'] });
      assert.equal(hook.statusCode, 201, hook.body);
      hookId = hook.json().id;
      await fn({ key, receiver, hookId, cleanup });
    } finally {
      for (const d of cleanup) await call(key, 'DELETE', `/v1/devices/${encodeURIComponent(d)}`);
      if (hookId) await call(key, 'DELETE', `/v1/webhooks/${hookId}`);
      await t.db.pool.query('update tenants set auto_create_devices = true where name = $1', [tenant]);
      await receiver.close();
    }
  }

  it('a JSON write naming a new device delivers one device.created with the POST /v1/devices payload; a second write nothing', async () => {
    await withTenant('dc-json', async ({ key, receiver, hookId, cleanup }) => {
      cleanup.push('auto-1', 'api-1');
      const before = await statementCounts(t.app);
      const res = await call(key, 'POST', '/v1/readings', [{ device: 'auto-1', metrics: { t: 21.5 } }]);
      assert.equal(res.statusCode, 200, res.body);
      const mid = await statementCounts(t.app);
      const ran = (k: string) => (mid.get(k) ?? 0) - (before.get(k) ?? 0);
      assert.equal(ran('ingest.insert_devices:ok'), 1);
      assert.equal(ran('webhooks.enqueue_deliveries:ok'), 1, 'one statement queues the events');
      assert.equal(await queued(hookId), 1, 'queued with the write');
      await runJobs();
      const got = events(receiver);
      assert.equal(got.length, 1);
      assert.equal(got[0]!.event, 'device.created');
      // the same payload as GET (and POST) /v1/devices gives for it
      const stored = await call(key, 'GET', '/v1/devices/auto-1');
      assert.equal(stored.statusCode, 200);
      assert.deepEqual(got[0]!.data, stored.json());
      assert.deepEqual(got[0]!.data, { ...stored.json(), id: 'auto-1', name: null, status: 'active', metadata: {} });
      const api = await call(key, 'POST', '/v1/devices', { id: 'api-1' });
      assert.equal(api.statusCode, 201);
      assert.deepEqual(Object.keys(got[0]!.data).sort(), Object.keys(api.json()).sort(), 'the shape POST /v1/devices sends');
      await runJobs(); // api-1's own event
      assert.equal(events(receiver).length, 2);

      // the device exists now: nothing more is queued, and no extra statement runs
      const again = await statementCounts(t.app);
      const res2 = await call(key, 'POST', '/v1/readings', [{ device: 'auto-1', metrics: { t: 22 } }]);
      assert.equal(res2.statusCode, 200, res2.body);
      const end = await statementCounts(t.app);
      const ran2 = (k: string) => (end.get(k) ?? 0) - (again.get(k) ?? 0);
      assert.equal(ran2('ingest.insert_devices:ok'), 0);
      assert.equal(ran2('webhooks.enqueue_deliveries:ok'), 0);
      assert.equal(await queued(hookId), 0);
      await runJobs();
      assert.equal(events(receiver).length, 2, 'no second device.created');
    });
  });

  it('a streaming NDJSON import creating 2 new devices delivers 2 events (none for the existing one)', async () => {
    await withTenant('dc-import', async ({ key, receiver, hookId, cleanup }) => {
      cleanup.push('known-1', 'imp-1', 'imp-2');
      assert.equal((await call(key, 'POST', '/v1/devices', { id: 'known-1' })).statusCode, 201);
      await runJobs(); // known-1's event, sent by the API
      assert.equal(events(receiver).length, 1);
      receiver.received.length = 0;

      const now = Date.now() - 60_000;
      const res = await importNdjson(
        key,
        ndjson([
          { device: 'known-1', ts: now, metrics: { a: 1 } },
          { device: 'imp-1', ts: now, metrics: { a: 2 } },
          { device: 'imp-2', ts: now, metrics: { a: 3 } },
          { device: 'imp-1', ts: now + 1000, metrics: { a: 4 } },
        ]),
      );
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json().devices, 3);
      assert.equal(await queued(hookId), 2);
      await runJobs();
      const got = events(receiver).sort((a, b) => String(a.data.id).localeCompare(String(b.data.id)));
      assert.deepEqual(got.map((e) => e.data.id), ['imp-1', 'imp-2']);
      assert.notEqual(got[0]!.id, got[1]!.id, 'a delivery id each');
      for (const e of got) assert.deepEqual(e.data, (await call(key, 'GET', `/v1/devices/${e.data.id}`)).json());
    });
  });

  it('a tenant with auto-creation off gets its 422 and no event', async () => {
    await withTenant('dc-strict', async ({ key, receiver, hookId }) => {
      await t.db.pool.query(`update tenants set auto_create_devices = false where name = 'dc-strict'`);
      const json = await call(key, 'POST', '/v1/readings', [{ device: 'nope-1', metrics: { a: 1 } }]);
      assert.equal(json.statusCode, 422, json.body);
      assert.equal(json.json().type, '/problems/unknown-device');
      const imp = await importNdjson(key, ndjson([{ device: 'nope-2', metrics: { a: 1 } }]));
      assert.equal(imp.statusCode, 422, imp.body);
      assert.equal(imp.json().type, '/problems/unknown-device');
      assert.deepEqual(await devicesOf('dc-strict'), []);
      assert.equal(await queued(hookId), 0);
      await runJobs();
      assert.equal(receiver.received.length, 0);
    });
  });

  it('a write that fails validation creates no device and no event; a failed import takes its events back', async () => {
    await withTenant('dc-invalid', async ({ key, receiver, hookId }) => {
      // all or nothing: the valid reading's device is not created either
      const bad = await call(key, 'POST', '/v1/readings', [
        { device: 'fine-1', metrics: { a: 1 } },
        { device: 'bad-1', ts: 'not a time', metrics: { a: 1 } },
      ]);
      assert.ok(bad.statusCode >= 400 && bad.statusCode < 500, bad.body);
      // a bad line after the first batch (5,000 lines): that batch's new device was created
      // and its event queued in the import's transaction, which then rolls back
      const lines: Line[] = Array.from({ length: 5001 }, (_, i) => ({ device: 'rolled-1', ts: Date.now() - 3_600_000 + i, metrics: { a: i } }));
      const before = await statementCounts(t.app);
      const imp = await importNdjson(key, `${ndjson(lines)}{"device":"rolled-2","ts":"not a time","metrics":{"a":1}}\n`);
      assert.equal(imp.statusCode, 422, imp.body);
      assert.equal(imp.json().line, 5002);
      const end = await statementCounts(t.app);
      const ran = (k: string) => (end.get(k) ?? 0) - (before.get(k) ?? 0);
      assert.equal(ran('webhooks.enqueue_deliveries:ok'), 1, 'the event was queued, in the transaction rolled back');
      assert.deepEqual(await devicesOf('dc-invalid'), []);
      assert.equal(await queued(hookId), 0);
      await runJobs();
      assert.equal(receiver.received.length, 0);
    });
  });

  it('a cached device deleted and written again is announced once (the flush retried uncached)', async () => {
    await withTenant('dc-recreate', async ({ key, receiver, hookId, cleanup }) => {
      cleanup.push('again-1');
      const write = async (v: number) => {
        const res = await call(key, 'POST', '/v1/readings', [{ device: 'again-1', metrics: { a: v } }]);
        assert.equal(res.statusCode, 200, res.body);
      };
      await write(1); // created, and its id cached by the batcher
      await write(2);
      await runJobs();
      assert.equal(events(receiver).length, 1);
      assert.equal((await call(key, 'DELETE', '/v1/devices/again-1')).statusCode, 204);
      // the cached write hits the foreign key (23503); the flush is redone uncached and re-creates it
      const before = await statementCounts(t.app);
      await write(3);
      const end = await statementCounts(t.app);
      assert.equal((end.get('ingest.write:error') ?? 0) - (before.get('ingest.write:error') ?? 0), 1, 'the cached attempt failed');
      assert.equal(await queued(hookId), 1);
      await runJobs();
      const got = events(receiver);
      assert.equal(got.length, 2, 'one more event, not two');
      assert.deepEqual(got[1]!.data, (await call(key, 'GET', '/v1/devices/again-1')).json());
    });
  });
});
