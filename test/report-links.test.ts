import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import type { TaskList } from 'graphile-worker';
import pino from 'pino';
import { buildApp } from '../src/app.ts';
import { loadConfig, type Config } from '../src/config.ts';
import { Database } from '../src/infra/db.ts';
import { mailTasks } from '../src/infra/mail.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { createKey } from '../src/modules/keys/service.ts';
import { reportTasks } from '../src/modules/reports/jobs.ts';
import { bearer } from './helpers/app.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { runJobsOnce } from './helpers/wait.ts';

const PUBLIC_URL = 'https://pulse.example.com/base';

/** The text of a single-part text/plain message, quoted-printable or base64 decoded. */
function mailBody(raw: string): string {
  const [head, ...rest] = raw.split(/\r?\n\r?\n/);
  const encoding = /^content-transfer-encoding:\s*(\S+)/im.exec(head!)?.[1] ?? '';
  let body = rest.join('\n\n');
  if (/quoted-printable/i.test(encoding)) {
    body = body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
  }
  if (/base64/i.test(encoding)) body = Buffer.from(body, 'base64').toString('utf8');
  return body.replace(/\r\n/g, '\n');
}

describe('report download links', () => {
  let db: TestDatabase;
  let database: Database;
  let app: FastifyInstance;
  let config: Config;
  let dir: string;
  let tasks: TaskList;
  let key: string;
  /** Everything the app and the jobs log, at every level: a token must never be in it. */
  let logs = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pulse-report-links-test-'));
    db = await createTestDatabase();
    config = loadConfig(
      {},
      { DATABASE_URL: db.url, LOG_LEVEL: 'trace', AUTH_CACHE_TTL_MS: 0, REPORTS_DIR: join(dir, 'reports'), MAIL_DIR: join(dir, 'mail'), SMTP_URL: '', PUBLIC_URL },
    );
    const sink = new Writable({
      write(chunk, _enc, cb) {
        logs += String(chunk);
        cb();
      },
    });
    const logger = pino({ level: 'trace' }, sink);
    const metrics = createMetrics();
    database = new Database(db.url, config, metrics, logger);
    await db.pool.query(`select pulse_ensure_partitions((now() at time zone 'utc')::date - 1, 9)`);
    app = await buildApp({ config, database, metrics, logger });
    await app.ready();
    const deps = { config, database, metrics, logger };
    tasks = { ...mailTasks(deps), ...reportTasks(deps) };
    key = (await createKey(database.api, 'links', ['read', 'write'])).key;
    const ts = Date.now() - 3_600_000;
    const w = await app.inject({
      method: 'POST',
      url: '/v1/readings',
      headers: bearer(key),
      payload: [0, 1, 2, 3].map((i) => ({ device: `l-${i % 2}`, ts: ts + i * 60_000, metrics: { temp: 20 + i, hum: 50 - i } })),
    });
    assert.equal(w.statusCode, 200, w.body);
  });
  after(async () => {
    await app.close();
    await database.close();
    await db.drop();
    await rm(dir, { recursive: true, force: true });
  });

  const run = () => runJobsOnce(db.url, tasks, db.pool);
  const get = (url: string, headers: Record<string, string> = {}) => app.inject({ method: 'GET', url, headers });
  const storedHash = async (id: string) =>
    (await db.pool.query<{ h: Buffer | null }>(`select download_token_hash as h from reports where id = $1`, [id])).rows[0]!.h;

  /** Requests a report (with `email` when given), runs the jobs and returns its id and the link mailed for it. */
  async function generate(email?: string): Promise<{ id: string; link: string | null; mail: string | null }> {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/reports',
      headers: bearer(key),
      payload: { metrics: ['temp', 'hum'], from: Date.now() - 86_400_000, to: Date.now(), format: 'csv', ...(email ? { email } : {}) },
    });
    assert.equal(res.statusCode, 202, res.body);
    const id = res.json().id as string;
    const mailsBefore = new Set(await readdir(config.MAIL_DIR).catch(() => [] as string[]));
    await run(); // generates the report, which queues the mail
    await run(); // sends (writes) the mail
    assert.equal((await get(`/v1/reports/${id}`, bearer(key))).json().status, 'ready');
    const fresh = (await readdir(config.MAIL_DIR).catch(() => [] as string[])).filter((f) => !mailsBefore.has(f));
    if (!email) {
      assert.equal(fresh.length, 0);
      return { id, link: null, mail: null };
    }
    assert.equal(fresh.length, 1, fresh.join(', '));
    const mail = mailBody(await readFile(join(config.MAIL_DIR, fresh[0]!), 'utf8'));
    const link = /^Download: (\S+)$/m.exec(mail)?.[1];
    assert.ok(link, mail);
    return { id, link, mail };
  }
  /** The link as app.inject takes it: path and query under PUBLIC_URL. */
  const pathOf = (link: string) => {
    assert.ok(link.startsWith(`${PUBLIC_URL}/v1/reports/`), link);
    return link.slice(PUBLIC_URL.length);
  };
  const tokenOf = (link: string) => new URL(link).searchParams.get('token')!;

  let a: { id: string; link: string; token: string };
  let b: { id: string; link: string; token: string };

  it('the e-mailed link downloads the report with no API key, the same content as the API gives', async () => {
    const r = await generate('analyst@example.com');
    a = { id: r.id, link: r.link!, token: tokenOf(r.link!) };
    assert.match(a.token, /^rdl_[A-Za-z0-9_-]{43}$/, 'rdl_ + 32 random bytes in base64url');
    assert.equal(a.link, `${PUBLIC_URL}/v1/reports/${a.id}/download?token=${a.token}`);
    assert.doesNotMatch(r.mail!, /Authorization|Bearer/, 'the mail asks for no API key');
    assert.match(r.mail!, /no API key needed until the report expires/);

    const byLink = await get(pathOf(a.link));
    assert.equal(byLink.statusCode, 200, byLink.body);
    assert.equal(byLink.headers['cache-control'], 'private, no-store');
    const byKey = await get(`/v1/reports/${a.id}/download`, bearer(key));
    assert.equal(byKey.statusCode, 200, byKey.body);
    assert.equal(byKey.headers['cache-control'], undefined, 'the key route is unchanged');
    assert.equal(byLink.body, byKey.body);
    assert.match(byLink.body, /^device,ts,temp,hum\nl-0,/);
    assert.equal(byLink.headers['content-disposition'], byKey.headers['content-disposition']);

    const gz = await get(pathOf(a.link), { 'accept-encoding': 'gzip' });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(gunzipSync(gz.rawPayload).toString('utf8'), byKey.body);
  });

  it('only the token\'s SHA-256 is stored, and the report\'s JSON does not show it', async () => {
    const hash = await storedHash(a.id);
    assert.ok(hash);
    assert.deepEqual(hash, createHash('sha256').update(a.token).digest());
    const report = await get(`/v1/reports/${a.id}`, bearer(key));
    assert.ok(!report.body.includes(a.token) && !report.body.includes('token'), report.body);
  });

  it('a wrong token, a token of another report or of no report is a 404 that does not tell which', async () => {
    const r = await generate('other@example.com');
    b = { id: r.id, link: r.link!, token: tokenOf(r.link!) };
    assert.notEqual(b.token, a.token);
    assert.equal((await get(pathOf(b.link))).statusCode, 200);

    const missing = '00000000-0000-4000-8000-000000000000';
    const cases = [
      `/v1/reports/${a.id}/download?token=${b.token}`, // B's token on A
      `/v1/reports/${b.id}/download?token=${a.token}`, // A's token on B
      `/v1/reports/${a.id}/download?token=rdl_${'A'.repeat(43)}`,
      `/v1/reports/${a.id}/download?token=${a.token.slice(0, -1)}`,
      `/v1/reports/${a.id}/download?token=`,
      `/v1/reports/${missing}/download?token=${a.token}`,
    ];
    for (const url of cases) {
      const res = await get(url);
      assert.equal(res.statusCode, 404, url);
      assert.match(res.headers['content-type'] as string, /^application\/problem\+json/);
      const id = url.split('/')[3];
      assert.equal(res.json().type, '/problems/not-found');
      assert.equal(res.json().detail, `No report '${id}'.`, 'the same answer as for a report that does not exist');
      // the error names the resource, not the query that carried the token
      assert.equal(res.json().instance, `/v1/reports/${id}/download`);
      assert.ok(!res.body.includes('rdl_'), res.body);
    }
  });

  it('without a token and without a key: the 401 of every other route', async () => {
    const today = await get(`/v1/reports/${a.id}`);
    assert.equal(today.statusCode, 401);
    const res = await get(`/v1/reports/${a.id}/download`);
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().type, today.json().type);
    assert.equal(res.json().detail, today.json().detail);
    // another query parameter is no token
    assert.equal((await get(`/v1/reports/${a.id}/download?t=${a.token}`)).statusCode, 401);
  });

  it('the token authenticates nothing but that download', async () => {
    for (const url of [`/v1/reports/${a.id}?token=${a.token}`, `/v1/reports?token=${a.token}`, `/v1/devices?token=${a.token}`]) {
      assert.equal((await get(url)).statusCode, 401, url);
    }
    // as a key it is unknown
    assert.equal((await get(`/v1/reports/${a.id}`, bearer(a.token))).statusCode, 401);
  });

  it('with an Authorization header the key rules apply, token or not', async () => {
    // a valid key: a wrong token is ignored
    assert.equal((await get(`/v1/reports/${a.id}/download?token=wrong`, bearer(key))).statusCode, 200);
    // a wrong key or a malformed header: 401 even with the right token
    assert.equal((await get(pathOf(a.link), bearer('pulse_wrong'))).statusCode, 401);
    assert.equal((await get(pathOf(a.link), { authorization: 'Basic abc' })).statusCode, 401);
    // another tenant's key: 404 as today, even with the right token
    const other = (await createKey(database.api, 'links-other', ['read'])).key;
    assert.equal((await get(pathOf(a.link), bearer(other))).statusCode, 404);
    // a key without the read scope: 403 as today
    const writer = (await createKey(database.api, 'links', ['write'])).key;
    assert.equal((await get(pathOf(a.link), bearer(writer))).statusCode, 403);
  });

  it('a report requested without e-mail stores no token, and no token opens it', async () => {
    const { id } = await generate();
    assert.equal(await storedHash(id), null);
    assert.equal((await get(`/v1/reports/${id}/download`, bearer(key))).statusCode, 200);
    assert.equal((await get(`/v1/reports/${id}/download?token=${a.token}`)).statusCode, 404);
    assert.equal((await get(`/v1/reports/${id}/download?token=`)).statusCode, 404);
  });

  it('after expiry the link no longer works', async () => {
    await db.pool.query(`update reports set expires_at = now() - interval '1 second' where id = $1`, [b.id]);
    // due but not yet swept
    const due = await get(pathOf(b.link));
    assert.equal(due.statusCode, 404);
    assert.match(due.json().detail, /expired/);
    await db.pool.query(`select graphile_worker.add_job('report.expire')`);
    await run();
    assert.equal((await get(`/v1/reports/${b.id}`, bearer(key))).json().status, 'expired');
    const swept = await get(pathOf(b.link));
    assert.equal(swept.statusCode, 404);
    assert.match(swept.json().detail, /expired/);
    // the other report's link still works
    assert.equal((await get(pathOf(a.link))).statusCode, 200);
  });

  it('no token reaches the log', () => {
    assert.match(logs, /e-mail written/, 'the log was captured');
    for (const token of [a.token, b.token]) assert.ok(!logs.includes(token), 'a token is in the log');
  });
});
