/**
 * Request generators of the bench scenarios, loaded by the load generator's child
 * process (bench/lib/load.ts): `make(args)` returns `(i) => request`. Devices are drawn
 * from a seeded Zipf distribution (a few hot devices, a long tail), the same sequence
 * for every system.
 */
import type { GeneratedRequest, RequestFn } from '../lib/load.ts';
import { seededRandom, zipfSampler } from '../lib/generators.ts';
import { sessionId } from './session-ids.ts';

export interface RequestArgs {
  kind:
    | 'latest'
    | 'dashboard'
    | 'range'
    | 'stats'
    | 'fleet-stats'
    | 'session-complete'
    | 'ingest'
    | 'ingest-batch'
    | 'line-protocol'
    | 'ndjson'
    | 'mixed'
    | 'ceiling-json'
    | 'ceiling-write';
  key: string;
  devices: number;
  /** Seeded data window, epoch µs. */
  startUs: number;
  endUs: number;
  /** Response size for ceiling-json. */
  bytes?: number;
  /** Distinguishes repeats so writes never collide with an earlier run's timestamps. */
  run?: number;
  /** Readings per request for the bulk kinds. */
  perRequest?: number;
  /** Open sessions of the session-completion scenario (bench/scenarios/session-ids.ts). */
  sessions?: number;
  /** The same question asked of a peer in its own API (bench/peers). */
  peer?: 'influxdb';
}

const iso = (us: number) => new Date(us / 1000).toISOString();

export function make(raw: unknown): RequestFn {
  const args = raw as RequestArgs;
  const headers = { authorization: `Bearer ${args.key}` };
  // reads ask for compression as browsers and HTTP client libraries do
  const readHeaders = { ...headers, 'accept-encoding': 'gzip, br' };
  const jsonHeaders = { ...headers, 'content-type': 'application/json' };
  const random = seededRandom(42 + (args.run ?? 0));
  const device = zipfSampler(args.devices, 1.1, random);
  const deviceName = () => `sensor-${device() + 1}`;
  // writes are stamped now, with the request number as µs so one device's readings differ
  const nowTs = (i: number) => {
    const us = Date.now() * 1000 + (i % 1000);
    return `${iso(us).slice(0, -1)}${String(us % 1000).padStart(3, '0')}Z`;
  };

  const latest = (): GeneratedRequest => ({ method: 'GET', path: `/v1/devices/${deviceName()}/latest`, headers: readHeaders });
  const dashboard: GeneratedRequest = { method: 'GET', path: '/v1/readings/latest?status=active&since=1d&limit=100', headers: readHeaders };
  const range = (): GeneratedRequest => ({
    method: 'GET',
    path: `/v1/devices/${deviceName()}/readings?metric=temperature&limit=100`,
    headers: readHeaders,
  });
  // 30 days ending at least an hour ago: closed time, which pulse may cache (src/infra/cache.ts)
  const statsToUs = Math.min(args.endUs, Date.now() * 1000 - 3_660e6);
  const statsPath = `metric=temperature&bucket=1h&from=${iso(Math.max(args.startUs, statsToUs - 30 * 86_400e6))}&to=${iso(statsToUs)}`;
  const stats = (): GeneratedRequest => ({ method: 'GET', path: `/v1/devices/${deviceName()}/stats?${statsPath}`, headers: readHeaders });
  const fleetStats: GeneratedRequest = { method: 'GET', path: `/v1/stats?${statsPath}&status=active`, headers: readHeaders };
  const ingest = (i: number): GeneratedRequest => ({
    method: 'POST',
    path: '/v1/readings',
    headers: jsonHeaders,
    body: Buffer.from(
      JSON.stringify([
        {
          device: deviceName(),
          ts: nowTs(i),
          metrics: { temperature: 20 + random() * 5, humidity: 40 + random() * 20, pressure: 1000 + random() * 20 },
        },
      ]),
    ),
  });

  // bulk writes: every reading gets its own µs, so no (device, ts) repeats within a run
  const n = args.perRequest ?? 1000;
  const bulkBaseUs = Date.now() * 1000;
  const bulkTs = (i: number, j: number) => bulkBaseUs + i * n + j;
  const value = () => Math.round(random() * 10_000) / 100;
  // bulk lines are pieced together from parts made once: formatting three random floats
  // per line made a 50,000-line NDJSON body cost ~100 ms of the load generator's CPU, on
  // the machine that it measures. Line j takes the values pool[j % POOL].
  const POOL = 4096;
  const pool = (render: () => string) => Array.from({ length: POOL }, render);
  const jsonMetrics = pool(() => `"metrics":{"temperature":${value()},"humidity":${value()},"pressure":${value()}}}`);
  const lpFields = pool(() => `temperature=${value()},humidity=${value()},pressure=${value()}`);
  /** A line-protocol line, as pulse and the InfluxDB peer are sent it. */
  const lpLine = (device: string, us: number, j: number) => `env,device=${device} ${lpFields[j % POOL]} ${us}`;
  const bulk = (i: number, type: string, line: (device: string, us: number, j: number) => string, path = '/v1/readings', join = '\n') => {
    const lines: string[] = new Array(n);
    for (let j = 0; j < n; j++) lines[j] = line(deviceName(), bulkTs(i, j), j);
    return { method: 'POST', path, headers: { ...headers, 'content-type': type }, body: Buffer.from(lines.join(join) + (join === ',' ? '' : '\n')) };
  };
  // epoch ms with the µs as a 3-digit fraction, by integer arithmetic (cheaper than formatting `us / 1000`)
  const epochMs = (us: number) => `${Math.floor(us / 1000)}.${String(us % 1000).padStart(3, '0')}`;
  const reading = (device: string, us: number, j: number) => `{"device":"${device}","ts":${epochMs(us)},${jsonMetrics[j % POOL]}`;

  if (args.peer === 'influxdb') return influxdb(args, deviceName, lpLine, bulk);
  switch (args.kind) {
    case 'ingest-batch':
      return (i) => {
        const r = bulk(i, 'application/json', reading, '/v1/readings', ',');
        return { ...r, body: Buffer.concat([Buffer.from('['), r.body, Buffer.from(']')]) };
      };
    case 'ndjson':
      return (i) => bulk(i, 'application/x-ndjson', reading);
    case 'line-protocol':
      return (i) => bulk(i, 'text/plain', lpLine, '/write?precision=us');
    case 'latest':
      return latest;
    case 'dashboard':
      return () => dashboard;
    case 'range':
      return range;
    case 'stats':
      return stats;
    case 'fleet-stats':
      return () => fleetStats;
    case 'session-complete':
      return (i) => ({ method: 'POST', path: `/v1/sessions/${sessionId(i, args.sessions ?? 1)}/complete`, headers });
    case 'ingest':
      return ingest;
    case 'mixed':
      // 80 % reads (latest 50, range 20, dashboard 10), 20 % single-reading writes
      return (i) => {
        const r = random();
        return r < 0.5 ? latest() : r < 0.7 ? range() : r < 0.8 ? dashboard : ingest(i);
      };
    case 'ceiling-json': {
      const req = { method: 'GET', path: `/ceiling/json?bytes=${args.bytes ?? 211}` };
      return () => req;
    }
    case 'ceiling-write': {
      const body = ingest(0).body;
      const req = { method: 'POST', path: '/ceiling/write', headers: { 'content-type': 'application/json' }, body };
      return () => req;
    }
  }
}

/** The scenarios InfluxDB answers, in its own API: line protocol writes and InfluxQL aggregates. */
function influxdb(
  args: RequestArgs,
  deviceName: () => string,
  line: (device: string, us: number, j: number) => string,
  bulk: (i: number, type: string, line: (device: string, us: number, j: number) => string, path: string) => GeneratedRequest,
): RequestFn {
  const write = '/write?db=pulse&precision=u';
  switch (args.kind) {
    case 'ingest':
      return (i) => ({ method: 'POST', path: write, headers: { 'content-type': 'text/plain' }, body: Buffer.from(line(deviceName(), Date.now() * 1000 + (i % 1000), i)) });
    case 'line-protocol':
      return (i) => bulk(i, 'text/plain', line, write);
    case 'stats': {
      const where = `time >= '${iso(args.startUs)}' AND time < '${iso(args.endUs)}'`;
      return () => {
        const q = `SELECT count(temperature),min(temperature),max(temperature),mean(temperature) FROM env WHERE device='${deviceName()}' AND ${where} GROUP BY time(1h) fill(none)`;
        return { method: 'GET', path: `/query?db=pulse&q=${encodeURIComponent(q)}` };
      };
    }
    default:
      throw new Error(`influxdb has no ${args.kind} scenario`);
  }
}
