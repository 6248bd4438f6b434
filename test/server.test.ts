import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { freePort } from './helpers/ports.ts';

const BIN = new URL('../bin/pulse.mjs', import.meta.url).pathname;

function start(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

async function waitReady(port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not become ready');
}


describe('pulse serve (real processes)', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(() => db.drop());

  it('starts, answers /readyz, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const child = start(['serve'], { DATABASE_URL: db.url, PORT: String(port), LOG_LEVEL: 'warn' });
    await waitReady(port, child);
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
  });

  it('with --workers 2 replaces a worker that dies', async () => {
    const port = await freePort();
    const child = start(['serve', '--workers', '2'], { DATABASE_URL: db.url, PORT: String(port), LOG_LEVEL: 'info' });
    let log = '';
    child.stdout!.on('data', (d) => (log += d));
    await waitReady(port, child);
    const workerPids = () =>
      spawnSync('pgrep', ['-P', String(child.pid)]).stdout.toString().trim().split('\n').filter(Boolean).map(Number);
    for (let i = 0; i < 100 && workerPids().length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    const before = workerPids();
    assert.equal(before.length, 2);
    process.kill(before[0]!, 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      const now = workerPids();
      if (now.length === 2 && !now.includes(before[0]!)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const afterPids = workerPids();
    assert.equal(afterPids.length, 2);
    assert.ok(!afterPids.includes(before[0]!));
    assert.match(log, /worker died; starting a replacement/);
    await waitReady(port, child);
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
  });

  it('refuses an invalid configuration with a message naming the variable', async () => {
    const child = start(['serve'], { DATABASE_URL: db.url, PORT: 'eighty' });
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    const [code] = await once(child, 'exit');
    assert.notEqual(code, 0);
    assert.match(err, /PORT/);
  });
});
