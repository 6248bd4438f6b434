/**
 * InfluxDB as the peer people would pick instead of pulse, for the ingest and aggregate
 * scenarios. Runs Debian's `influxd` (1.x) as a child process with a data folder of the
 * bench's own, loaded once per seed with the same readings as pulse's bench database
 * (copied out of PostgreSQL), so both answer the same questions over the same data.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { RunningSystem } from '../systems.ts';

export const INFLUX_DB = 'pulse';
export const INFLUX_MEASUREMENT = 'env';

/** The influxd binary on PATH, or null (the bench then leaves InfluxDB out and says so). */
export function findInfluxd(): string | null {
  const r = spawnSync('sh', ['-c', 'command -v influxd'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function config(dir: string, port: number) {
  return `reporting-disabled = true
bind-address = "127.0.0.1:${port + 1}"
[meta]
  dir = "${dir}/meta"
[data]
  dir = "${dir}/data"
  wal-dir = "${dir}/wal"
  query-log-enabled = false
  max-series-per-database = 0
  max-values-per-tag = 0
[http]
  bind-address = "127.0.0.1:${port}"
  log-enabled = false
[logging]
  level = "warn"
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
`;
}

async function query(port: number, q: string) {
  const res = await fetch(`http://127.0.0.1:${port}/query?q=${encodeURIComponent(q)}`, { method: 'POST' });
  if (!res.ok) throw new Error(`influxdb ${q}: ${res.status} ${await res.text()}`);
}

async function write(port: number, body: string) {
  const res = await fetch(`http://127.0.0.1:${port}/write?db=${INFLUX_DB}&precision=s`, { method: 'POST', body });
  if (res.status !== 204) throw new Error(`influxdb write: ${res.status} ${await res.text()}`);
}

/** Copies every reading of the bench database into InfluxDB as line protocol (device tag, one field per metric). */
async function load(port: number, databaseUrl: string, say: (s: string) => void): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  let lines = 0;
  try {
    const stream = client.query(
      copyTo(`copy (select d.external_id, extract(epoch from r.ts)::int8, m.names, r.vals
                      from readings r join devices d on d.id = r.device_id join metric_sets m on m.id = r.metric_set) to stdout`),
    );
    let batch: string[] = [];
    const inFlight = new Set<Promise<void>>();
    const flush = async () => {
      const p = write(port, batch.join('\n')).finally(() => inFlight.delete(p));
      batch = [];
      inFlight.add(p);
      if (inFlight.size >= 2) await Promise.race(inFlight);
    };
    for await (const row of createInterface({ input: stream, crlfDelay: Infinity })) {
      const [device, ts, names, vals] = row.split('\t') as [string, string, string, string];
      const n = names.slice(1, -1).split(',');
      const v = vals.slice(1, -1).split(',');
      batch.push(`${INFLUX_MEASUREMENT},device=${device} ${n.map((name, i) => `${name}=${v[i]}`).join(',')} ${ts}`);
      if (batch.length === 20_000) {
        await flush();
        lines += 20_000;
        if (lines % 1_000_000 === 0) say(`  influxdb: ${lines.toLocaleString('en')} readings`);
      }
    }
    lines += batch.length;
    if (batch.length) await flush();
    await Promise.all(inFlight);
  } finally {
    await client.end();
  }
  return lines;
}

async function stop(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await once(child, 'exit');
  clearTimeout(timer);
}

/**
 * Starts influxd on `port` with the data of `seedKey` in `.pulse/bench-influx/<size>`,
 * loading it from the bench database first when the folder holds another seed.
 */
export async function startInfluxdb(
  binary: string,
  port: number,
  size: string,
  seedKey: string,
  databaseUrl: string,
  say: (s: string) => void,
): Promise<RunningSystem> {
  const dir = resolve(`.pulse/bench-influx/${size}`);
  const marker = `${dir}/seed.json`;
  const loaded = existsSync(marker) && readFileSync(marker, 'utf8') === seedKey;
  if (!loaded) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/influxdb.conf`, config(dir, port));
  const child = spawn(binary, ['-config', `${dir}/influxdb.conf`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`influxd exited with ${child.exitCode}: ${stderr}`);
    const up = await fetch(`http://127.0.0.1:${port}/ping`).then((r) => r.status === 204, () => false);
    if (up) break;
    if (i > 300) throw new Error(`influxd not ready: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    if (!loaded) {
      await query(port, `CREATE DATABASE ${INFLUX_DB}`);
      say('loading the same readings into InfluxDB');
      const started = Date.now();
      const n = await load(port, databaseUrl, say);
      say(`  influxdb: ${n.toLocaleString('en')} readings in ${((Date.now() - started) / 1000).toFixed(0)} s`);
      writeFileSync(marker, seedKey);
    }
  } catch (err) {
    await stop(child);
    throw err;
  }
  return { name: 'influxdb', kind: 'peer', port, pid: child.pid!, queries: async () => null, stop: () => stop(child) };
}
