import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import client from 'prom-client';
import { ClusterMetricsClient, type PrimaryChannel } from '../src/infra/cluster-metrics.ts';
import { createMetrics } from '../src/infra/metrics.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { startServer, type ServerProcess } from './helpers/server.ts';
import { until } from './helpers/wait.ts';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (pulse's label values have no escapes). */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

const pick = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

/**
 * GET on a connection of its own: the cluster hands connections to workers in turn, so
 * requests without keep-alive are spread over the workers (fetch would reuse one).
 */
function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
      })
      .on('error', reject);
  });
}

describe('/metrics of pulse serve --workers 2 (real processes)', () => {
  let db: TestDatabase;
  let server: ServerProcess;
  const K = 40;
  const healthz = { route: '/healthz', method: 'GET', status: '200' };

  before(async () => {
    db = await createTestDatabase();
    server = await startServer(db.url, { WORKERS: '2' });
    // /readyz answered by one worker; the other may still be starting: wait until both report
    await until('both workers in /metrics', async () => {
      const res = await get(`${server.url}/metrics`);
      if (res.status !== 200) return undefined;
      return pick(parse(res.body), 'pulse_cluster_workers')[0]?.value === 2 ? true : undefined;
    });
  });
  after(async () => {
    const code = await server?.stop();
    await db?.drop();
    assert.equal(code, 0, server?.output());
  });

  it('counts every worker\'s requests on every scrape, whichever worker answers', async () => {
    const workerPids = spawnSync('pgrep', ['-P', String(server.child.pid)]).stdout.toString().trim().split('\n').filter(Boolean).sort();
    assert.equal(workerPids.length, 2);
    // nothing has asked for /healthz yet (startServer polls /readyz)
    for (let i = 0; i < K; i++) assert.equal((await get(`${server.url}/healthz`)).status, 200);

    for (let scrape = 0; scrape < 6; scrape++) {
      const res = await get(`${server.url}/metrics`);
      assert.equal(res.status, 200, res.body);
      assert.equal(res.type, client.prometheusContentType);
      const samples = parse(res.body);
      // exactly K: /metrics and /readyz are counted under their own routes
      const counts = pick(samples, 'pulse_http_request_duration_seconds_count', healthz);
      assert.equal(counts.length, 1, 'one series after aggregation');
      assert.equal(counts[0]!.value, K, `scrape ${scrape}`);
      assert.equal(pick(samples, 'pulse_http_request_duration_seconds_bucket', { ...healthz, le: '+Inf' })[0]?.value, K);
      assert.equal(pick(samples, 'pulse_cluster_workers')[0]?.value, 2);
      const pids = pick(samples, 'pulse_cluster_worker_start_time_seconds').map((s) => s.labels.pid!).sort();
      assert.deepEqual(pids, workerPids, 'both workers contributed');
      // the /metrics scrapes so far (counted after each answer): one series, summed
      assert.equal(pick(samples, 'pulse_http_request_duration_seconds_count', { route: '/metrics', status: '200' }).length, 1);
    }
  });

  it('answers concurrent scrapes each with the whole cluster', async () => {
    const answers = await Promise.all(Array.from({ length: 8 }, () => get(`${server.url}/metrics`)));
    for (const res of answers) {
      assert.equal(res.status, 200, res.body);
      const samples = parse(res.body);
      assert.equal(pick(samples, 'pulse_http_request_duration_seconds_count', healthz)[0]?.value, K);
      assert.equal(pick(samples, 'pulse_cluster_workers')[0]?.value, 2);
    }
  });
});

/** A primary that records asks and answers only when told. */
function fakePrimary() {
  const events = new EventEmitter();
  const asks: { id: number }[] = [];
  let failSend: Error | null = null;
  const channel: PrimaryChannel = {
    send(message, callback) {
      if (failSend) return callback(failSend);
      asks.push(message);
      callback(null);
    },
    on: (event, listener) => void events.on(event, listener),
    off: (event, listener) => void events.off(event, listener),
  };
  return {
    channel,
    asks,
    answer: (id: number, answer: { text?: string; error?: string }) => events.emit('message', { type: 'pulse:cluster-metrics-answer', id, ...answer }),
    failSends: (err: Error) => (failSend = err),
    listeners: () => events.listenerCount('message'),
  };
}

describe('ClusterMetricsClient (the worker side of a scrape)', () => {
  it('gives up after its timeout and drops the late answer', async () => {
    const primary = fakePrimary();
    const c = new ClusterMetricsClient(primary.channel, 50);
    const started = Date.now();
    await assert.rejects(c.fetch(), /no answer from the cluster primary within 50 ms/);
    assert.ok(Date.now() - started >= 45);
    primary.answer(primary.asks[0]!.id, { text: 'late 1\n' }); // ignored, no throw
    // the next ask is answered on time
    const next = c.fetch();
    primary.answer(primary.asks[1]!.id, { text: 'on time 1\n' });
    assert.equal(await next, 'on time 1\n');
    c.close();
    assert.equal(primary.listeners(), 0);
  });

  it('matches concurrent answers to their asks by id', async () => {
    const primary = fakePrimary();
    const c = new ClusterMetricsClient(primary.channel, 5_000);
    const a = c.fetch();
    const b = c.fetch();
    const [askA, askB] = primary.asks;
    assert.notEqual(askA!.id, askB!.id);
    primary.answer(askB!.id, { text: 'b 1\n' });
    primary.answer(askA!.id, { text: 'a 1\n' });
    assert.deepEqual(await Promise.all([a, b]), ['a 1\n', 'b 1\n']);
    c.close();
  });

  it('rejects on the primary\'s error, a failed send, and close', async () => {
    const primary = fakePrimary();
    const c = new ClusterMetricsClient(primary.channel, 5_000);
    const failed = c.fetch();
    primary.answer(primary.asks[0]!.id, { error: 'Operation timed out.' });
    await assert.rejects(failed, /Operation timed out/);
    const waiting = c.fetch();
    c.close();
    await assert.rejects(waiting, /closed/);
    primary.failSends(new Error('channel closed'));
    const c2 = new ClusterMetricsClient(primary.channel, 5_000);
    await assert.rejects(c2.fetch(), /channel closed/);
    c2.close();
  });
});

describe('aggregators of pulse\'s gauges', () => {
  it('sums per-process quantities and takes the max of shared state', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.cacheSource.l1Bytes = () => 100;
    b.cacheSource.l1Bytes = () => 20;
    b.cacheSource.circuitOpen = () => 1;
    a.ingestBufferSource.values = () => 3;
    b.ingestBufferSource.values = () => 4;
    // only the process with a job worker knows the queue
    a.jobsSource.snapshot = async () => ({ counts: [{ task: 'retention', state: 'queued', n: 5 }], oldestQueuedS: 12 });
    a.rollupLagSeconds.set(30);
    a.readingsWritten.inc(7);
    b.readingsWritten.inc(8);
    const text = await client.AggregatorRegistry.aggregate([await a.registry.getMetricsAsJSON(), await b.registry.getMetricsAsJSON()]).metrics();
    const samples = parse(text);
    const value = (name: string, labels: Record<string, string> = {}) => pick(samples, name, labels)[0]?.value;
    assert.equal(value('pulse_cache_l1_bytes'), 120);
    assert.equal(value('pulse_ingest_buffer', { unit: 'values' }), 7);
    assert.equal(value('pulse_readings_values_written_total'), 15);
    assert.equal(value('pulse_cache_l2_circuit_open'), 1);
    assert.equal(value('pulse_jobs', { task: 'retention', state: 'queued' }), 5);
    assert.equal(value('pulse_jobs_oldest_queued_seconds'), 12);
    assert.equal(value('pulse_rollup_lag_seconds'), 30);
  });
});
