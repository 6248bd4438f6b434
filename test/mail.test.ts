import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TaskList } from 'graphile-worker';
import pino from 'pino';
import { SMTPServer } from 'smtp-server';
import type { Config } from '../src/config.ts';
import { enqueueMail, mailTasks } from '../src/infra/mail.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { reportTasks } from '../src/modules/reports/jobs.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { runJobsOnce } from './helpers/wait.ts';

interface Delivered {
  from: string;
  to: string[];
  raw: string;
}

/** A real SMTP server on a free port; `reject` makes it refuse recipients (a failing mail server). */
async function startSmtp() {
  const messages: Delivered[] = [];
  const state = { reject: false };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(_address, _session, cb) {
      cb(state.reject ? Object.assign(new Error('mailbox unavailable'), { responseCode: 450 }) : null);
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        messages.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        cb();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.server.address() as AddressInfo).port;
  return { messages, state, url: `smtp://127.0.0.1:${port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** The text of a (single-part, text/plain) message: headers apart, quoted-printable decoded. */
function parse(raw: string) {
  const [head, ...rest] = raw.split(/\r?\n\r?\n/);
  const headers = new Map<string, string>();
  for (const line of head!.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const i = line.indexOf(':');
    headers.set(line.slice(0, i).toLowerCase(), line.slice(i + 1).trim());
  }
  let body = rest.join('\n\n');
  if (/quoted-printable/i.test(headers.get('content-transfer-encoding') ?? '')) {
    body = body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
  }
  if (/base64/i.test(headers.get('content-transfer-encoding') ?? '')) body = Buffer.from(body, 'base64').toString('utf8');
  return { headers, body: body.replace(/\r\n/g, '\n') };
}


const silent = pino({ level: 'silent' });

describe('e-mail', () => {
  let t: TestApp;
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  let dir: string;
  before(async () => {
    t = await createTestApp();
    smtp = await startSmtp();
    dir = await mkdtemp(join(tmpdir(), 'pulse-mail-test-'));
  });
  after(async () => {
    await smtp.close();
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  const tasksWith = (config: Partial<Config>): TaskList => {
    const deps = { config: { ...t.config, ...config }, database: t.database, metrics: createMetrics(), logger: silent };
    return { ...mailTasks(deps), ...reportTasks(deps) };
  };
  const run = async (taskList: TaskList) => {
    await runJobsOnce(t.db.url, taskList, t.db.pool);
  };
  const mailJobs = async () =>
    (
      await t.db.pool.query<{ attempts: number; last_error: string | null }>(
        `select attempts, last_error from graphile_worker.jobs where task_identifier = 'mail.send' order by id`,
      )
    ).rows;

  it('sends a queued message through SMTP', async () => {
    const before = smtp.messages.length;
    await t.database.api.tx((tx) => enqueueMail(tx, { to: 'ops@example.com', subject: 'Hello from pulse', text: 'A test message.' }));
    await run(tasksWith({ SMTP_URL: smtp.url, MAIL_FROM: 'pulse <pulse@example.com>' }));
    assert.equal(smtp.messages.length, before + 1);
    const m = smtp.messages.at(-1)!;
    assert.deepEqual(m.to, ['ops@example.com']);
    assert.equal(m.from, 'pulse@example.com');
    const { headers, body } = parse(m.raw);
    assert.equal(headers.get('subject'), 'Hello from pulse');
    assert.equal(body.trim(), 'A test message.');
    assert.equal((await mailJobs()).length, 0);
  });

  it('mails "report ready" with the download link when a report asked for it', async () => {
    const key = await t.key('mail-report');
    const ts = new Date(Date.now() - 3_600_000).toISOString();
    const w = await t.app.inject({
      method: 'POST',
      url: '/v1/readings',
      headers: bearer(key),
      payload: [{ device: 'm-1', ts, metrics: { temp: 20.5 } }],
    });
    assert.equal(w.statusCode, 200, w.body);
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/reports',
      headers: bearer(key),
      payload: { metrics: ['temp'], from: Date.now() - 86_400_000, to: Date.now(), format: 'csv', email: 'analyst@example.com' },
    });
    assert.equal(res.statusCode, 202, res.body);
    const id = res.json().id as string;
    const before = smtp.messages.length;
    const tasks = tasksWith({ SMTP_URL: smtp.url, PUBLIC_URL: 'https://pulse.example.com/base', REPORTS_DIR: join(dir, 'reports') });
    await run(tasks); // generates the report, which queues the mail
    await run(tasks); // sends the mail
    assert.equal(smtp.messages.length, before + 1);
    const m = smtp.messages.at(-1)!;
    assert.deepEqual(m.to, ['analyst@example.com']);
    const { headers, body } = parse(m.raw);
    assert.equal(headers.get('subject'), 'Your pulse report is ready (CSV, 1 rows)');
    assert.match(body, new RegExp(`^Download: https://pulse\\.example\\.com/base/v1/reports/${id}/download\\?token=rdl_[A-Za-z0-9_-]{43}$`, 'm'), body);
    const report = (await t.app.inject({ method: 'GET', url: `/v1/reports/${id}`, headers: bearer(key) })).json();
    assert.ok(body.includes(`Available until: ${report.expires_at}`), body);
  });

  it('a failing mail server fails the job (retried later), not the report', async () => {
    const key = await t.key('mail-failing');
    smtp.state.reject = true;
    try {
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/reports',
        headers: bearer(key),
        payload: { metrics: ['temp'], from: Date.now() - 86_400_000, to: Date.now(), format: 'ndjson', email: 'nobody@example.com' },
      });
      assert.equal(res.statusCode, 202, res.body);
      const tasks = tasksWith({ SMTP_URL: smtp.url, REPORTS_DIR: join(dir, 'reports') });
      await run(tasks);
      await run(tasks);
      const report = (await t.app.inject({ method: 'GET', url: `/v1/reports/${res.json().id}`, headers: bearer(key) })).json();
      assert.equal(report.status, 'ready');
      const jobs = await mailJobs();
      assert.equal(jobs.length, 1, 'the mail job waits for a retry');
      assert.equal(jobs[0]!.attempts, 1);
      assert.match(jobs[0]!.last_error ?? '', /mailbox unavailable/);
    } finally {
      smtp.state.reject = false;
      await t.db.pool.query(
        `delete from graphile_worker._private_jobs j using graphile_worker._private_tasks k where k.id = j.task_id and k.identifier = 'mail.send'`,
      );
    }
  });

  it('without SMTP_URL, writes the message as an .eml file into MAIL_DIR', async () => {
    const mailDir = join(dir, 'eml');
    await t.database.api.tx((tx) => enqueueMail(tx, { to: 'someone@example.com', subject: 'Written to disk', text: 'Body on disk.' }));
    await run(tasksWith({ SMTP_URL: '', MAIL_DIR: mailDir }));
    const files = await readdir(mailDir);
    assert.equal(files.length, 1, files.join(', '));
    assert.match(files[0]!, /\.eml$/);
    const { headers, body } = parse(await readFile(join(mailDir, files[0]!), 'utf8'));
    assert.equal(headers.get('to'), 'someone@example.com');
    assert.equal(headers.get('subject'), 'Written to disk');
    assert.equal(body.trim(), 'Body on disk.');
  });

  it('queues nothing when the transaction rolls back, and refuses a bad address', async () => {
    const before = (await t.db.pool.query(`select count(*)::int as n from graphile_worker.jobs`)).rows[0].n;
    await assert.rejects(
      t.database.api.tx(async (tx) => {
        await enqueueMail(tx, { to: 'a@example.com', subject: 's', text: 't' });
        throw new Error('roll back');
      }),
      /roll back/,
    );
    await assert.rejects(t.database.api.tx((tx) => enqueueMail(tx, { to: 'a@example.com\r\nBcc: b@example.com', subject: 's', text: 't' })), /invalid mail message/);
    assert.equal((await t.db.pool.query(`select count(*)::int as n from graphile_worker.jobs`)).rows[0].n, before);
  });
});
