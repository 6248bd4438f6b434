import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildApp } from '../src/app.ts';
import { loadConfig, type Config } from '../src/config.ts';
import { Database } from '../src/infra/db.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { requireService } from './helpers/services.ts';

const cacheTier = (res: { headers: Record<string, unknown> }) => /cache;desc=(\w+)/.exec(String(res.headers['server-timing']))?.[1];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A second pulse app on an existing database (the test app's), like another instance. */
async function instanceOn(databaseUrl: string, overrides: Partial<Config>) {
  const config = loadConfig({}, { DATABASE_URL: databaseUrl, LOG_LEVEL: 'silent', AUTH_CACHE_TTL_MS: 0, ...overrides });
  const logger = pino({ level: 'silent' });
  const metrics = createMetrics();
  const database = new Database(databaseUrl, config, metrics, logger);
  const app = await buildApp({ config, database, metrics, logger });
  await app.ready();
  return {
    app,
    async close() {
      await app.close();
      await database.close();
    },
  };
}

/** Polls `check` until it holds or `ms` have passed; returns whether it held. */
async function within(ms: number, check: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
}

describe('cache with Redis: two instances', { skip: await requireService('Redis', '127.0.0.1', 6379) }, () => {
  // a key prefix of this run's own: the shared Redis serves other test files too
  const redis = { REDIS_URL: 'redis://127.0.0.1:6379', CACHE_PREFIX: `pt${randomBytes(4).toString('hex')}`, CACHE_DASHBOARD_DEBOUNCE_MS: 0 };
  let t: TestApp;
  let b: Awaited<ReturnType<typeof instanceOn>>;
  let key: string;
  before(async () => {
    t = await createTestApp(redis);
    b = await instanceOn(t.db.url, redis);
    key = await t.key('acme');
  });
  after(async () => {
    await b.close();
    await t.close();
  });

  const read = (app: FastifyInstance, url: string) => app.inject({ url, headers: bearer(key) });
  const write = (app: FastifyInstance, device: string, value: number) =>
    app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [{ device, metrics: { t: value } }] });

  it('shares entries through L2', async () => {
    await write(t.app, 'l2-1', 1);
    assert.equal(cacheTier(await read(t.app, '/v1/devices/l2-1/latest')), 'miss');
    const onB = await read(b.app, '/v1/devices/l2-1/latest');
    assert.equal(cacheTier(onB), 'l2');
    assert.equal(onB.json().metrics.t.value, 1);
    assert.equal(cacheTier(await read(b.app, '/v1/devices/l2-1/latest')), 'l1');
  });

  /**
   * A round changes something through A and checks that B sees it within 1 s. On a loaded
   * machine one round may miss the second: a few rounds are allowed, one must make it.
   */
  const someRoundWithin1s = async (round: () => Promise<() => Promise<boolean>>) => {
    for (let i = 0; i < 5; i++) if (await within(1_000, await round())) return true;
    return false;
  };

  it('makes a write through one instance visible on the other within 1 s', async () => {
    await write(t.app, 'x-1', 1);
    assert.equal((await read(b.app, '/v1/devices/x-1/latest')).json().metrics.t.value, 1);
    assert.equal(cacheTier(await read(b.app, '/v1/devices/x-1/latest')), 'l1');
    let v = 1;
    assert.ok(
      await someRoundWithin1s(async () => {
        const value = ++v;
        await read(b.app, '/v1/devices/x-1/latest'); // B holds the current value
        assert.equal((await write(t.app, 'x-1', value)).statusCode, 200);
        return async () => (await read(b.app, '/v1/devices/x-1/latest')).json().metrics.t.value === value;
      }),
    );

    assert.equal((await read(b.app, '/v1/devices/x-1')).json().name, null);
    let n = 0;
    assert.ok(
      await someRoundWithin1s(async () => {
        const name = `renamed-${++n}`;
        await read(b.app, '/v1/devices/x-1');
        await t.app.inject({ method: 'PATCH', url: '/v1/devices/x-1', headers: bearer(key), payload: { name } });
        return async () => (await read(b.app, '/v1/devices/x-1')).json().name === name;
      }),
    );

    const dash = '/v1/readings/latest?status=any';
    let d = 1;
    assert.ok(
      await someRoundWithin1s(async () => {
        const device = `x-${++d}`;
        await read(b.app, dash);
        await write(t.app, device, 5);
        return async () => (await read(b.app, dash)).json().items.some((i: { device: string }) => i.device === device);
      }),
    );
  });
});

/** A redis-server of the test's own on a free port: the shared one at 6379 is never stopped. */
function ownRedis() {
  let port = 0;
  let server: ChildProcess | null = null;
  return {
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    get process() {
      return server!;
    },
    async start() {
      port ||= await new Promise<number>((resolve) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as { port: number }).port;
          s.close(() => resolve(p));
        });
      });
      server = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1'], { stdio: 'ignore' });
      assert.ok(await within(5_000, async () => (await requireService('own redis', '127.0.0.1', port, 200).catch(() => 'down')) === undefined));
    },
    async stop() {
      if (!server || server.exitCode !== null) return;
      server.kill('SIGKILL');
      await once(server, 'exit');
    },
  };
}

describe('cache when Redis dies and comes back', { skip: await requireService('Redis', '127.0.0.1', 6379) }, () => {
  const own = ownRedis();
  const startRedis = () => own.start();
  const stopRedis = () => own.stop();
  let t: TestApp;
  let b: Awaited<ReturnType<typeof instanceOn>>;
  let key: string;

  before(async () => {
    await startRedis();
    const redis = { REDIS_URL: own.url, CACHE_L2_BREAKER_MS: 500, CACHE_DASHBOARD_DEBOUNCE_MS: 0 };
    t = await createTestApp(redis);
    b = await instanceOn(t.db.url, redis);
    key = await t.key('acme');
  });
  after(async () => {
    await b.close();
    await t.close();
    await stopRedis();
  });

  const read = (app: FastifyInstance, url: string) => app.inject({ url, headers: bearer(key) });
  const write = (app: FastifyInstance, device: string, value: number) =>
    app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [{ device, metrics: { t: value } }] });

  it('keeps answering without Redis and uses it again once it is back', async () => {
    await write(t.app, 'r-1', 1);
    assert.equal(cacheTier(await read(t.app, '/v1/devices/r-1/latest')), 'miss');
    assert.equal(cacheTier(await read(b.app, '/v1/devices/r-1/latest')), 'l2');

    await stopRedis();
    for (let i = 0; i < 20; i++) {
      const res = await read(t.app, `/v1/devices/r-1/latest`);
      assert.equal(res.statusCode, 200);
      assert.equal(res.json().metrics.t.value, 1);
      const fresh = await read(t.app, `/v1/devices/r-${i + 2}`);
      assert.equal(fresh.statusCode, 404); // never cached: straight to the database
    }
    // writes are still acknowledged, and read back on the same instance
    assert.equal((await write(t.app, 'r-1', 2)).statusCode, 200);
    assert.equal((await read(t.app, '/v1/devices/r-1/latest')).json().metrics.t.value, 2);
    const metrics = (await t.app.inject({ url: '/metrics' })).body;
    assert.match(metrics, /pulse_cache_redis_errors_total [1-9]/);

    await startRedis();
    // recovered: an entry one instance reads is found in L2 by the other
    let n = 0;
    assert.ok(
      await within(10_000, async () => {
        const device = `back-${n++}`;
        await write(t.app, device, 3);
        await read(t.app, `/v1/devices/${device}/latest`);
        return cacheTier(await read(b.app, `/v1/devices/${device}/latest`)) === 'l2';
      }),
    );
    // and B has not kept its pre-outage value of r-1 (the write during the outage reached no bus)
    assert.ok(await within(1_000, async () => (await read(b.app, '/v1/devices/r-1/latest')).json().metrics.t.value === 2));
  });
});

describe('cache when Redis is frozen while instances start', { skip: await requireService('Redis', '127.0.0.1', 6379) }, () => {
  const own = ownRedis();
  let t: TestApp;
  let b: Awaited<ReturnType<typeof instanceOn>>;
  let key: string;
  before(async () => {
    await own.start();
    own.process.kill('SIGSTOP'); // accepts connections, answers nothing: every command times out
    const redis = { REDIS_URL: own.url, CACHE_DASHBOARD_DEBOUNCE_MS: 0 };
    t = await createTestApp(redis);
    b = await instanceOn(t.db.url, redis);
    key = await t.key('acme');
    own.process.kill('SIGCONT');
  });
  after(async () => {
    await b.close();
    await t.close();
    await own.stop();
  });

  it('subscribes the bus once Redis answers, so evictions reach the other instance', async () => {
    const write = (value: number) =>
      t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [{ device: 'f-1', metrics: { t: value } }] });
    const onB = async () => (await b.app.inject({ url: '/v1/devices/f-1/latest', headers: bearer(key) })).json().metrics.t.value;
    let v = 0;
    // each round: B caches the value, A overwrites it; done once B sees A's write within 1 s
    assert.ok(
      await within(15_000, async () => {
        await write(++v);
        await onB();
        await write(++v);
        return within(1_000, async () => (await onB()) === v);
      }),
    );
  });
});
