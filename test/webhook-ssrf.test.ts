import { after, before, beforeEach, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import dns from 'node:dns';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import pino from 'pino';
import { createMetrics } from '../src/infra/metrics.ts';
import { webhookTasks } from '../src/modules/webhooks/jobs.ts';
import { postWebhook } from '../src/modules/webhooks/post.ts';
import { isPrivateAddress, privateHostReason, publicOnlyLookup } from '../src/modules/webhooks/targets.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { runJobsOnce } from './helpers/wait.ts';

/** URLs a tenant must not be able to point a webhook at by default (the brief's list and some other spellings). */
const PRIVATE_URLS = [
  'http://127.0.0.1:1/',
  'http://10.0.0.1/',
  'http://169.254.169.254/',
  'http://[::1]/',
  'http://[::ffff:127.0.0.1]/',
  'http://localhost/',
  'http://LOCALHOST./x',
  'http://api.localhost:8080/',
  'http://2130706433/', // 127.0.0.1 in decimal
  'http://0x7f.1/', // 127.0.0.1 in hex shorthand
  'http://0.0.0.0/',
  'http://[::]/',
  'https://172.16.5.4/',
  'https://192.168.1.1/',
  'http://100.64.0.1/',
  'http://224.0.0.1/',
  'http://255.255.255.255/',
  'http://[fd00::1]/',
  'http://[fe80::1]/',
  'http://[ff02::1]/',
  'http://[::ffff:169.254.169.254]/',
  'http://[64:ff9b::10.0.0.1]/', // NAT64 of a private address
];

/** Hosts a webhook may use (IP literals are never resolved; names are checked at delivery). */
const PUBLIC_URLS = [
  'https://example.com/hooks/pulse',
  'http://93.184.215.14/',
  'http://8.8.8.8:8080/x',
  'http://[2606:4700:4700::1111]/',
  'http://[::ffff:8.8.8.8]/',
  'http://[64:ff9b::8.8.8.8]/', // NAT64 of a public address (IPv6-only hosts)
  'https://localhost.example.com/', // only `localhost` and `*.localhost` are the local host
  'http://172.32.0.1/', // just outside 172.16/12
];

/** An HTTP endpoint on 127.0.0.1 that records every request; `/redirect` answers 302 to `/target`. */
async function startReceiver() {
  const paths: string[] = [];
  const server: Server = createServer((req, res) => {
    paths.push(req.url ?? '');
    req.resume();
    req.on('end', () => {
      if (req.url === '/redirect') res.writeHead(302, { location: `http://127.0.0.1:${port}/target` }).end();
      else res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    paths,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('webhook targets: private addresses', () => {
  it('classifies addresses: private, loopback, link-local, CGNAT, unspecified, multicast, reserved; public ones pass', () => {
    for (const a of [
      '127.0.0.1', '127.255.255.254', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.0.1', '169.254.169.254', '100.64.0.1',
      '100.127.255.255', '0.0.0.0', '224.0.0.251', '239.255.255.250', '255.255.255.255', '240.0.0.1', '192.0.2.1', '198.18.0.1',
      '::', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::ffff:169.254.169.254', '64:ff9b::a9fe:a9fe',
      'fc00::1', 'fd12:3456::1', 'fe80::1', 'febf::1', 'ff02::1', '2001:db8::1', '2002:7f00:1::1', 'not an address',
    ]) assert.equal(isPrivateAddress(a), true, a);
    for (const a of ['8.8.8.8', '93.184.215.14', '172.32.0.1', '100.128.0.1', '11.0.0.1', '2606:4700:4700::1111', '2a00:1450:4001::1', '::ffff:8.8.8.8', '64:ff9b::808:808']) {
      assert.equal(isPrivateAddress(a), false, a);
    }
  });

  it('an IPv4 address, its IPv4-mapped and its NAT64 IPv6 forms are judged alike (property)', () => {
    fc.assert(
      fc.property(fc.ipV4(), (v4) => {
        const expected = isPrivateAddress(v4);
        assert.equal(isPrivateAddress(`::ffff:${v4}`), expected, `::ffff:${v4}`);
        assert.equal(isPrivateAddress(`64:ff9b::${v4}`), expected, `64:ff9b::${v4}`);
      }),
      { numRuns: 2000 },
    );
  });

  it('registration names the reason from the URL alone: IP literals and localhost, no DNS', () => {
    assert.match(privateHostReason('[::1]') ?? '', /::1 is a loopback, private, link-local or reserved address/);
    assert.match(privateHostReason('foo.localhost.') ?? '', /foo\.localhost is the local host/);
    assert.equal(privateHostReason('intranet.example'), null, 'a name is not resolved at registration');
  });
});

describe('webhook registration (default: private targets refused)', () => {
  let t: TestApp;
  let open: TestApp;
  before(async () => {
    t = await createTestApp();
    open = await createTestApp({ WEBHOOK_ALLOW_PRIVATE: true });
  });
  after(async () => {
    await t.close();
    await open.close();
  });
  const register = async (app: TestApp, key: string, url: string) =>
    app.app.inject({ method: 'POST', url: '/v1/webhooks', headers: bearer(key), payload: { url, events: ['device.created'] } });

  it('refuses loopback, private, link-local, metadata, IPv4-mapped and localhost URLs with 400 problem+json naming the setting', async () => {
    assert.equal(t.config.WEBHOOK_ALLOW_PRIVATE, false, 'the default');
    const key = await t.key('ssrf-refused');
    const count = async () => (await t.db.pool.query<{ n: number }>('select count(*)::int as n from webhooks')).rows[0]!.n;
    const before = await count();
    for (const url of PRIVATE_URLS) {
      const res = await register(t, key, url);
      assert.equal(res.statusCode, 400, `${url}: ${res.body}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
      const body = res.json() as { type: string; detail: string };
      assert.match(body.type, /validation/);
      assert.match(body.detail, /public address/, url);
      assert.match(body.detail, /WEBHOOK_ALLOW_PRIVATE/, url);
    }
    assert.equal(await count(), before, 'nothing was created');
  });

  it('accepts public addresses and names (names are only checked at delivery)', async () => {
    const key = await t.key('ssrf-public');
    for (const url of PUBLIC_URLS) {
      const res = await register(t, key, url);
      assert.equal(res.statusCode, 201, `${url}: ${res.body}`);
    }
  });

  it('with WEBHOOK_ALLOW_PRIVATE=true accepts them all', async () => {
    const key = await open.key('ssrf-allowed');
    for (const url of PRIVATE_URLS.slice(0, 6)) {
      const res = await register(open, key, url);
      assert.equal(res.statusCode, 201, `${url}: ${res.body}`);
    }
  });
});

describe('webhook delivery (default: private targets refused at connection)', () => {
  let t: TestApp;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  before(async () => {
    t = await createTestApp();
    receiver = await startReceiver();
  });
  after(async () => {
    await receiver.close();
    await t.close();
  });
  beforeEach(() => {
    receiver.paths.length = 0;
  });
  const signal = () => AbortSignal.timeout(2_000);
  const post = (url: string, allowPrivate: boolean) => postWebhook(new URL(url), '{}', { headers: { 'content-type': 'application/json' }, signal: signal(), allowPrivate });

  it('a webhook stored with a loopback URL (registered under another setting): the job fails with the refusal and the receiver gets nothing', async () => {
    const key = await t.key('ssrf-deliver');
    const { rows } = await t.db.pool.query<{ id: string }>(
      `insert into webhooks (tenant_id, url, events, secret)
       select id, $2::text, array['device.created'], 'whsec_test' from tenants where name = $1::text
       returning id::text`,
      ['ssrf-deliver', `http://127.0.0.1:${receiver.port}/stored`],
    );
    const hookId = rows[0]!.id;
    const dev = await t.app.inject({ method: 'POST', url: '/v1/devices', headers: bearer(key), payload: { id: 'ssrf-1' } });
    assert.equal(dev.statusCode, 201, dev.body);
    const tasks = webhookTasks({ config: { ...t.config, WEBHOOK_TIMEOUT_MS: 2_000 }, database: t.database, metrics: createMetrics(), logger: pino({ level: 'silent' }) });
    await runJobsOnce(t.db.url, tasks, t.db.pool);
    assert.deepEqual(receiver.paths, [], 'nothing reached the receiver');
    const jobs = await t.db.pool.query<{ attempts: number; last_error: string | null }>(
      `select j.attempts, j.last_error from graphile_worker.jobs j join graphile_worker._private_jobs p on p.id = j.id
        where j.task_identifier = 'webhook.deliver' and p.payload->>'webhook_id' = $1`,
      [hookId],
    );
    assert.equal(jobs.rows.length, 1, 'the delivery waits for a retry');
    assert.equal(jobs.rows[0]!.attempts, 1);
    assert.match(jobs.rows[0]!.last_error ?? '', /webhook target refused: 127\.0\.0\.1 is a loopback, private, link-local or reserved address \(WEBHOOK_ALLOW_PRIVATE=true allows it\)/);
  });

  it('refuses IP literals before connecting (node does not call lookup for them), IPv6 and IPv4-mapped forms too', async () => {
    for (const url of [`http://127.0.0.1:${receiver.port}/literal`, `http://[::ffff:127.0.0.1]:${receiver.port}/mapped`, `http://[::1]:${receiver.port}/v6`, `http://localhost:${receiver.port}/name`]) {
      await assert.rejects(post(url, false), { name: 'PrivateTargetError', message: /webhook target refused/ }, url);
    }
    assert.deepEqual(receiver.paths, []);
  });

  it('a name that resolves to a private address is refused at connection; with WEBHOOK_ALLOW_PRIVATE=true it is delivered', async (ctx) => {
    // DNS is the external boundary: `hooks.example` resolves to the receiver's loopback address,
    // as a public name rebound to 127.0.0.1 after registration would
    const realLookup = dns.lookup;
    const calls: string[] = [];
    ctx.mock.method(dns, 'lookup', ((host: string, options: dns.LookupOptions, cb: (...a: unknown[]) => void) => {
      calls.push(host);
      if (host !== 'hooks.example') return (realLookup as (...a: unknown[]) => void)(host, options, cb);
      const addresses = [{ address: '127.0.0.1', family: 4 }];
      if (options.all) cb(null, addresses);
      else cb(null, '127.0.0.1', 4);
    }) as typeof dns.lookup);
    const url = `http://hooks.example:${receiver.port}/rebound`;
    await assert.rejects(post(url, false), { name: 'PrivateTargetError', message: /hooks\.example resolves to 127\.0\.0\.1/ });
    assert.deepEqual(receiver.paths, [], 'refused before connecting');
    assert.ok(calls.includes('hooks.example'), 'the name was resolved for the connection');
    // the control: the same name, the same mocked DNS, the operator allowing private targets
    assert.equal(await post(url, true), 204);
    assert.deepEqual(receiver.paths, ['/rebound']);
  });

  it('the lookup refuses a name if any of its addresses is private', async () => {
    mock.method(dns, 'lookup', ((_host: string, options: dns.LookupOptions, cb: (...a: unknown[]) => void) => {
      const addresses = [{ address: '93.184.215.14', family: 4 }, { address: '10.0.0.7', family: 4 }];
      if (options.all) cb(null, addresses);
      else cb(null, addresses[0]!.address, 4);
    }) as typeof dns.lookup);
    try {
      for (const all of [true, false]) {
        const err = await new Promise<Error | null>((resolve) => publicOnlyLookup('mixed.example', { all }, (e) => resolve(e)));
        assert.match(err?.message ?? '', /mixed\.example resolves to 10\.0\.0\.7/, `all: ${all}`);
      }
    } finally {
      mock.restoreAll();
    }
  });

  it('a redirect is not followed, even where private targets are allowed: the 3xx is the result', async () => {
    assert.equal(await post(`http://127.0.0.1:${receiver.port}/redirect`, true), 302);
    assert.deepEqual(receiver.paths, ['/redirect'], 'the redirect target was not requested');
  });
});
