import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { createKey } from '../src/modules/keys/service.ts';
import { revokeKey } from '../src/modules/keys/repository.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';

function assertProblem(res: LightMyRequestResponse, status: number, type: string) {
  assert.equal(res.statusCode, status, res.body);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
  const p = res.json();
  assert.equal(p.type, type);
  assert.equal(p.status, status);
  assert.equal(typeof p.detail, 'string');
  assert.ok(p.detail.length > 0);
}

describe('auth', () => {
  let t: TestApp;
  let admin: string;
  before(async () => {
    t = await createTestApp();
    admin = await t.key('acme');
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/readings',
      headers: bearer(admin),
      payload: [{ device: 'auth-dev', ts: '2026-11-05T10:00:00Z', metrics: { t: 1 } }],
    });
    assert.equal(res.statusCode, 200, res.body);
  });
  after(() => t.close());

  describe('401 without a valid key', () => {
    const get = (headers: Record<string, string>) => t.app.inject({ url: '/v1/devices/auth-dev', headers });

    it('no Authorization header', async () => {
      assertProblem(await get({}), 401, '/problems/unauthorized');
    });

    it('malformed Authorization headers', async () => {
      for (const h of ['', 'Bearer', 'Bearer ', `Basic ${Buffer.from('a:b').toString('base64')}`, `${admin}`, `Bearer ${admin} extra`]) {
        assertProblem(await get({ authorization: h }), 401, '/problems/unauthorized');
      }
    });

    it('an unknown key', async () => {
      assertProblem(await get(bearer('pulse_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')), 401, '/problems/unauthorized');
      assertProblem(await get(bearer(`${admin}x`)), 401, '/problems/unauthorized');
    });

    it('a revoked key (at once: AUTH_CACHE_TTL_MS is 0 here)', async () => {
      const { id, key } = await createKey(t.database.api, 'acme', ['read']);
      assert.equal((await get(bearer(key))).statusCode, 200);
      assert.ok(await revokeKey(t.database.api, id));
      assertProblem(await get(bearer(key)), 401, '/problems/unauthorized');
      // other keys of the tenant still work
      assert.equal((await get(bearer(admin))).statusCode, 200);
    });

    it('401 on every /v1 endpoint, before the body is looked at', async () => {
      const calls = [
        { method: 'GET', url: '/v1/devices' },
        { method: 'POST', url: '/v1/devices', payload: { id: 'x' } },
        { method: 'PATCH', url: '/v1/devices/auth-dev', payload: { name: 'x' } },
        { method: 'DELETE', url: '/v1/devices/auth-dev' },
        { method: 'POST', url: '/v1/readings', payload: '{not json' },
        { method: 'GET', url: '/v1/devices/auth-dev/latest' },
        { method: 'GET', url: '/v1/devices/auth-dev/readings' },
        { method: 'GET', url: '/v1/devices/auth-dev/stats?metric=t' },
        { method: 'GET', url: '/v1/readings/latest' },
      ] as const;
      for (const c of calls) {
        const res = await t.app.inject({ ...c, headers: { 'content-type': 'application/json' } });
        assertProblem(res, 401, '/problems/unauthorized');
      }
      assert.equal((await t.app.inject({ url: '/v1/devices/auth-dev', headers: bearer(admin) })).statusCode, 200, 'DELETE did not run');
    });
  });

  it('`Authorization: Token <key>` works like Bearer (and the scheme is case-insensitive)', async () => {
    for (const scheme of ['Token', 'token', 'bearer', 'BEARER']) {
      const res = await t.app.inject({ url: '/v1/devices/auth-dev', headers: { authorization: `${scheme} ${admin}` } });
      assert.equal(res.statusCode, 200, `${scheme}: ${res.body}`);
      assert.equal(res.json().id, 'auth-dev');
    }
  });

  describe('scopes', () => {
    let readOnly: string;
    let writeOnly: string;
    before(async () => {
      readOnly = await t.key('acme', ['read']);
      writeOnly = await t.key('acme', ['write']);
    });

    it('a read-only key reads but gets 403 problem+json for every write', async () => {
      assert.equal((await t.app.inject({ url: '/v1/devices/auth-dev/latest', headers: bearer(readOnly) })).statusCode, 200);
      assert.equal((await t.app.inject({ url: '/v1/devices', headers: bearer(readOnly) })).statusCode, 200);
      const snapshot = async () => (await t.db.pool.query(`select external_id, name from devices order by external_id`)).rows;
      const before = await snapshot();
      const writes = [
        { method: 'POST', url: '/v1/devices', payload: { id: 'ro-new' } },
        { method: 'PATCH', url: '/v1/devices/auth-dev', payload: { name: 'ro' } },
        { method: 'DELETE', url: '/v1/devices/auth-dev' },
        { method: 'POST', url: '/v1/readings', payload: [{ device: 'ro-dev', ts: '2026-11-05T10:00:00Z', metrics: { t: 1 } }] },
      ] as const;
      for (const w of writes) {
        const res = await t.app.inject({ ...w, headers: bearer(readOnly) });
        assertProblem(res, 403, '/problems/forbidden');
        assert.match(res.json().detail, /write/);
      }
      assert.deepEqual(await snapshot(), before, 'nothing was written');
      assert.ok(before.some((d) => d.external_id === 'auth-dev'));
    });

    it('the scope is checked before the body: a read-only key sending malformed JSON gets 403', async () => {
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/readings',
        headers: { ...bearer(readOnly), 'content-type': 'application/json' },
        payload: '[{"device":',
      });
      assertProblem(res, 403, '/problems/forbidden');
    });

    it('a write-only key writes but gets 403 for every read', async () => {
      const w = await t.app.inject({
        method: 'POST',
        url: '/v1/readings',
        headers: bearer(writeOnly),
        payload: [{ device: 'wo-dev', ts: '2026-11-05T10:00:00Z', metrics: { t: 1 } }],
      });
      assert.equal(w.statusCode, 200, w.body);
      for (const url of [
        '/v1/devices',
        '/v1/devices/wo-dev',
        '/v1/devices/wo-dev/latest',
        '/v1/devices/wo-dev/readings',
        '/v1/devices/wo-dev/stats?metric=t',
        '/v1/readings/latest',
      ]) {
        const res = await t.app.inject({ url, headers: bearer(writeOnly) });
        assertProblem(res, 403, '/problems/forbidden');
        assert.match(res.json().detail, /read/);
      }
    });

    it('admin implies read and write (a key with only `admin` can do both)', async () => {
      const adminOnly = await t.key('acme', ['admin']);
      const w = await t.app.inject({
        method: 'POST',
        url: '/v1/readings',
        headers: bearer(adminOnly),
        payload: [{ device: 'admin-dev', ts: '2026-11-05T10:00:00Z', metrics: { t: 1 } }],
      });
      assert.equal(w.statusCode, 200, w.body);
      const r = await t.app.inject({ url: '/v1/devices/admin-dev/latest', headers: bearer(adminOnly) });
      assert.equal(r.statusCode, 200, r.body);
      assert.equal(r.json().metrics.t.value, 1);
    });
  });

  describe('tenant isolation', () => {
    let a: string;
    let b: string;
    const snapshotA = async () =>
      (
        await t.db.pool.query(
          `select d.external_id, d.name, d.status, v.metric, r.ts, v.value, l.ts as latest_ts, l.value as latest
             from devices d join tenants tn on tn.id = d.tenant_id
             left join readings r on r.device_id = d.id
             left join metric_sets m on m.id = r.metric_set
             left join lateral unnest(m.names, r.vals) as v(metric, value) on true
             left join latest_values l on l.device_id = d.id and l.metric = v.metric
            where tn.name = 'tenant-a'
            order by 1, 4, 5`,
        )
      ).rows;
    before(async () => {
      a = await t.key('tenant-a');
      b = await t.key('tenant-b');
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/readings',
        headers: bearer(a),
        payload: [
          { device: 'a-only', ts: '2026-11-05T10:00:00Z', metrics: { t: 1 } },
          { device: 'a-only', ts: '2026-11-05T11:00:00Z', metrics: { t: 2 } },
          { device: 'shared-id', ts: '2026-11-05T10:00:00Z', metrics: { t: 10 } },
        ],
      });
      assert.equal(res.statusCode, 200, res.body);
    });

    it("B gets 404 (never 403) for A's device on every device-addressed endpoint", async () => {
      const before = await snapshotA();
      // the snapshot sees every value of A's readings and its latest values
      assert.deepEqual(
        before.map((r) => [r.external_id, r.metric, r.value, r.latest]),
        [['a-only', 't', 1, 2], ['a-only', 't', 2, 2], ['shared-id', 't', 10, 10]],
      );
      const calls = [
        { method: 'GET', url: '/v1/devices/a-only' },
        { method: 'PATCH', url: '/v1/devices/a-only', payload: { name: 'stolen' } },
        { method: 'DELETE', url: '/v1/devices/a-only' },
        { method: 'GET', url: '/v1/devices/a-only/latest' },
        { method: 'GET', url: '/v1/devices/a-only/readings' },
        { method: 'GET', url: '/v1/devices/a-only/readings?metric=t' },
        { method: 'GET', url: '/v1/devices/a-only/stats?metric=t&from=2026-11-05T00:00:00Z&to=2026-11-06T00:00:00Z' },
      ] as const;
      for (const c of calls) {
        const res = await t.app.inject({ ...c, headers: bearer(b) });
        assertProblem(res, 404, '/problems/not-found');
        // indistinguishable from a device that does not exist anywhere
        const missing = await t.app.inject({ ...c, url: c.url.replace('a-only', 'no-such-device'), headers: bearer(b) });
        assert.equal(missing.statusCode, 404);
        assert.equal(res.json().detail.replace('a-only', 'X'), missing.json().detail.replace('no-such-device', 'X'));
      }
      assert.deepEqual(await snapshotA(), before, "A's data is unchanged");
      // and A still sees its device
      assert.equal((await t.app.inject({ url: '/v1/devices/a-only', headers: bearer(a) })).json().name, null);
    });

    it("B's device list and dashboard never show A's devices", async () => {
      const w = await t.app.inject({
        method: 'POST',
        url: '/v1/readings',
        headers: bearer(b),
        payload: [{ device: 'b-only', ts: '2026-11-05T12:00:00Z', metrics: { t: 5 } }],
      });
      assert.equal(w.statusCode, 200, w.body);
      const list = await t.app.inject({ url: '/v1/devices?limit=1000', headers: bearer(b) });
      const ids = list.json().items.map((d: { id: string }) => d.id);
      assert.ok(ids.includes('b-only'));
      assert.ok(!ids.includes('a-only') && !ids.includes('auth-dev'), ids.join(','));
      for (const status of ['active', 'inactive', 'any']) {
        const dash = await t.app.inject({ url: `/v1/readings/latest?status=${status}&since=366d&limit=1000`, headers: bearer(b) });
        assert.equal(dash.statusCode, 200, dash.body);
        for (const item of dash.json().items) assert.ok(!['a-only', 'auth-dev', 'admin-dev'].includes(item.device), item.device);
      }
      // A's dashboard and list do not show B's device either
      const dashA = await t.app.inject({ url: '/v1/readings/latest?status=any&since=366d&limit=1000', headers: bearer(a) });
      assert.deepEqual(dashA.json().items.map((i: { device: string }) => i.device).sort(), ['a-only', 'shared-id']);
    });

    it("B writing to a device id A also has creates B's own device; A's data is unchanged", async () => {
      const before = await snapshotA();
      const w = await t.app.inject({
        method: 'POST',
        url: '/v1/readings',
        headers: bearer(b),
        payload: [{ device: 'shared-id', ts: '2026-11-05T13:00:00Z', metrics: { t: 99, other: 7 } }],
      });
      assert.equal(w.statusCode, 200, w.body);
      assert.deepEqual(w.json(), { readings: 1, values: 2, devices: 1 });
      assert.deepEqual(await snapshotA(), before);

      const latestA = (await t.app.inject({ url: '/v1/devices/shared-id/latest', headers: bearer(a) })).json();
      assert.deepEqual(latestA.metrics, { t: { ts: '2026-11-05T10:00:00.000Z', value: 10 } });
      const latestB = (await t.app.inject({ url: '/v1/devices/shared-id/latest', headers: bearer(b) })).json();
      assert.deepEqual(latestB.metrics, {
        other: { ts: '2026-11-05T13:00:00.000Z', value: 7 },
        t: { ts: '2026-11-05T13:00:00.000Z', value: 99 },
      });
      const { rows } = await t.db.pool.query(
        `select tn.name from devices d join tenants tn on tn.id = d.tenant_id where d.external_id = 'shared-id' order by 1`,
      );
      assert.deepEqual(rows.map((r) => r.name), ['tenant-a', 'tenant-b']);

      // B deleting its own 'shared-id' leaves A's alone
      assert.equal((await t.app.inject({ method: 'DELETE', url: '/v1/devices/shared-id', headers: bearer(b) })).statusCode, 204);
      assert.deepEqual(await snapshotA(), before);
    });

    it("B creating a device with A's id through POST /v1/devices is not a conflict", async () => {
      const res = await t.app.inject({ method: 'POST', url: '/v1/devices', headers: bearer(b), payload: { id: 'a-only', name: 'mine' } });
      assert.equal(res.statusCode, 201, res.body);
      assert.equal((await t.app.inject({ url: '/v1/devices/a-only', headers: bearer(a) })).json().name, null);
    });
  });
});
