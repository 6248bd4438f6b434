/**
 * The measurement pieces of `pulse bench`, against a real ceiling server in a child
 * process. Every load run is bounded (duration or request count, per-request timeout);
 * nothing asserts on speed — only on shape and internal consistency.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { jsonBodyOfSize } from '../bench/lib/ceiling.ts';
import { cycle, seededRandom, zipfSampler } from '../bench/lib/generators.ts';
import { assertLoopbackOrigin, LoadSpecError, runLoad, type LoadSpec } from '../bench/lib/load.ts';
import { parseProcStat, parseProcStatusMem, processTree, startSampling, type Sampler } from '../bench/lib/procstat.ts';
import { renderHeadline, renderScenarioTable, writeReport, type BenchResults, type SystemResult } from '../bench/lib/report.ts';
import type { LoadResult } from '../bench/lib/result.ts';
import { spawnLoad } from '../bench/lib/spawn-load.ts';
import { median, summarizeRuns } from '../bench/lib/stats.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const GENERATORS = fileURLToPath(new URL('../bench/lib/generators.ts', import.meta.url));
const CEILING_BYTES = 211;

interface Ceiling {
  port: number;
  pid: number;
  url: string;
  stop(): Promise<void>;
}

function startCeiling(): Promise<Ceiling> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'bench/lib/ceiling.ts', '--port', '0'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ceiling did not start: ${err}`));
    }, 20_000);
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /^listening (\d+)$/m.exec(out);
      if (m && child.pid !== undefined) {
        clearTimeout(timer);
        const port = Number(m[1]);
        resolve({
          port,
          pid: child.pid,
          url: `http://127.0.0.1:${port}`,
          async stop() {
            child.kill('SIGTERM');
            await exited;
          },
        });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`ceiling exited ${code}: ${err}`));
    });
  });
}

function assertResultShape(r: LoadResult): void {
  for (const key of ['requests', 'durationS', 'rps', 'errors', 'timeouts', 'non2xx', 'loadgenCpuPct', 'bytesIn'] as const) {
    assert.equal(typeof r[key], 'number', key);
    assert.ok(Number.isFinite(r[key]) && r[key] >= 0, `${key} = ${r[key]}`);
  }
  for (const key of ['p50', 'p90', 'p99', 'max', 'mean'] as const) {
    assert.ok(Number.isFinite(r.latencyUs[key]) && r.latencyUs[key] >= 0, `latencyUs.${key}`);
  }
  const statusTotal = Object.values(r.status).reduce((a, b) => a + b, 0);
  assert.equal(statusTotal, r.requests, 'status counts add up to requests');
  assert.equal(r.non2xx, r.requests - (r.status['2xx'] ?? 0));
  assert.ok(r.timeouts <= r.errors);
  assert.equal(
    Object.values(r.errorCodes).reduce((a, b) => a + b, 0),
    r.errors,
    'error codes add up to errors',
  );
  if (r.requests > 0) {
    const l = r.latencyUs;
    assert.ok(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, `percentiles ordered: ${JSON.stringify(l)}`);
    assert.ok(l.p50 >= 1 && l.mean <= l.max);
    assert.ok(r.durationS > 0);
    assert.ok(Math.abs(r.rps - r.requests / r.durationS) <= 0.01 + r.rps * 1e-3);
  }
}

const fixedGet = (url: string, extra: Partial<LoadSpec> = {}): LoadSpec => ({
  url,
  connections: 4,
  durationMs: 1000,
  warmupMs: 200,
  timeoutMs: 5000,
  requests: { module: GENERATORS, export: 'fixed', args: { method: 'GET', path: `/ceiling/json?bytes=${CEILING_BYTES}` } },
  ...extra,
});

describe('against the ceiling server', () => {
  let ceiling: Ceiling;
  before(async () => {
    ceiling = await startCeiling();
  });
  after(async () => {
    await ceiling?.stop();
  });

  test('GET through the load CLI, with the server sampled over the measured window', async () => {
    let sampler: Sampler | undefined;
    let server: ReturnType<Sampler['stop']> | undefined;
    const phases: string[] = [];
    const r = await spawnLoad(fixedGet(ceiling.url), {
      onPhase(phase) {
        phases.push(phase);
        if (phase === 'measure') sampler = startSampling([ceiling.pid], 50);
        else server = sampler?.stop();
      },
    });
    assertResultShape(r);
    assert.equal(r.driver, 'pulse-load');
    assert.ok(r.requests > 0);
    assert.equal(r.errors, 0);
    assert.equal(r.status['2xx'], r.requests);
    assert.equal(r.bytesIn, r.requests * CEILING_BYTES, 'every body counted, warm-up excluded');
    assert.deepEqual(phases, ['measure', 'stopped']);

    assert.ok(server !== undefined);
    assert.ok(Number.isFinite(server.cpuPct) && server.cpuPct >= 0);
    assert.ok(server.peakRssBytes > 0 && server.meanRssBytes > 0 && server.meanRssBytes <= server.peakRssBytes);
    assert.ok(server.hwmRssBytes >= server.meanRssBytes);
    assert.deepEqual(server.pids, [ceiling.pid]);
    assert.ok(server.samples >= 2);
  });

  test('POST in-process: 204s are 2xx, no body comes back', async () => {
    const r = await runLoad({
      url: ceiling.url,
      connections: 4,
      durationMs: 1000,
      warmupMs: 100,
      requests: {
        module: 'bench/lib/generators.ts',
        export: 'fixed',
        args: { method: 'POST', path: '/ceiling/write', headers: { 'content-type': 'application/json' }, body: { v: [1, 2, 3] } },
      },
    }, { baseDir: ROOT });
    assertResultShape(r);
    assert.ok(r.requests > 0);
    assert.equal(r.status['2xx'], r.requests);
    assert.equal(r.bytesIn, 0);
  });

  test('maxRequests ends the run once that many measured requests are answered', { timeout: 60_000 }, async () => {
    const r = await runLoad(fixedGet(ceiling.url, { durationMs: 60_000, warmupMs: 0, maxRequests: 25 }));
    assertResultShape(r);
    assert.equal(r.requests + r.errors, 25);
  });

  test('prefetch makes the next request while the current one is in flight', { timeout: 60_000 }, async () => {
    // a server that answers after 30 ms; the generator notes, when called, how many requests it made are unanswered
    let answered = 0;
    const server = createHttpServer((req, res) => {
      req.resume();
      req.on('end', () => setTimeout(() => res.end('{}', () => answered++), 30));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const unansweredAtCall = async (prefetch: boolean) => {
        answered = 0;
        const seen: number[] = [];
        const generator = (i: number) => (seen.push(i - answered), { method: 'GET', path: '/' });
        const r = await runLoad({ ...fixedGet(url, { connections: 1, durationMs: 60_000, warmupMs: 0, maxRequests: 6 }), prefetch }, { generator });
        assert.equal(r.requests, 6);
        return seen.slice(0, 6);
      };
      const plain = await unansweredAtCall(false);
      assert.deepEqual(plain, [0, 0, 0, 0, 0, 0], 'without prefetch each request is made once the previous one is answered');
      const ahead = await unansweredAtCall(true);
      assert.deepEqual(ahead, [0, 1, 1, 1, 1, 1], 'with prefetch each next request is made while the previous one is in flight');
    } finally {
      server.close();
    }
  });

  test('non-2xx responses are counted by class', async () => {
    const generator = cycle({
      requests: [
        { method: 'GET', path: '/ceiling/json?bytes=50' },
        { method: 'GET', path: '/no-such-route' },
      ],
    });
    const r = await runLoad(fixedGet(ceiling.url, { durationMs: 500, warmupMs: 0 }), { generator });
    assertResultShape(r);
    assert.ok((r.status['4xx'] ?? 0) > 0 && (r.status['2xx'] ?? 0) > 0);
    assert.equal(r.non2xx, r.status['4xx']);
  });

  test('procstat follows a process tree', () => {
    assert.ok(processTree(process.pid).includes(ceiling.pid));
    const s = startSampling([process.pid], 1000, { includeDescendants: true }).stop();
    assert.ok(s.pids.includes(process.pid) && s.pids.includes(ceiling.pid));
    assert.ok(s.peakRssBytes > 0 && Number.isFinite(s.cpuPct));
  });
});

describe('load generator bounds', () => {
  test('refuses anything but a 127.0.0.1 origin', async () => {
    for (const url of [
      'http://localhost:8080',
      'http://10.0.0.1:80',
      'https://127.0.0.1:8443',
      'http://127.0.0.1:8080/api',
      'http://127.0.0.1:8080/?x=1',
      'http://user:pw@127.0.0.1:8080',
      'not a url',
    ]) {
      assert.throws(() => assertLoopbackOrigin(url), LoadSpecError, url);
      await assert.rejects(runLoad(fixedGet(url)), LoadSpecError, url);
    }
    assert.equal(assertLoopbackOrigin('http://127.0.0.1:8080/'), 'http://127.0.0.1:8080');
  });

  test('the CLI exits 2 on a bad spec', async () => {
    const code = await new Promise<number | null>((resolve) => {
      const child = execFile(
        process.execPath,
        ['--import', 'tsx', 'bench/lib/load-cli.ts', JSON.stringify(fixedGet('http://example.com'))],
        { cwd: ROOT },
      );
      child.on('exit', resolve);
    });
    assert.equal(code, 2);
  });

  test('a server that never answers produces timeouts, not responses', async () => {
    const sockets = new Set<Socket>();
    const server: Server = createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const r = await runLoad(fixedGet(`http://127.0.0.1:${port}`, { connections: 2, durationMs: 1500, warmupMs: 0, timeoutMs: 200 }));
      assertResultShape(r);
      assert.equal(r.requests, 0);
      assert.ok(r.timeouts > 0 && r.errors >= r.timeouts, JSON.stringify(r.errorCodes));
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('a closed port produces connection errors', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    await new Promise((resolve) => server.close(resolve));
    const r = await runLoad(fixedGet(`http://127.0.0.1:${port}`, { durationMs: 300, warmupMs: 0 }));
    assertResultShape(r);
    assert.equal(r.requests, 0);
    assert.ok((r.errorCodes.ECONNREFUSED ?? 0) > 0);
  });
});

describe('generators and the ceiling body', () => {
  test('jsonBodyOfSize is valid JSON of exactly the asked size', () => {
    fc.assert(
      fc.property(fc.integer({ min: 8, max: 20_000 }), (n) => {
        const body = jsonBodyOfSize(n);
        JSON.parse(body);
        return Buffer.byteLength(body) === n;
      }),
    );
  });

  test('zipf: ranks in range, rank 0 the most frequent, reproducible by seed', () => {
    const draw = zipfSampler(100, 1.1, seededRandom(42));
    const counts = new Array<number>(100).fill(0);
    for (let i = 0; i < 20_000; i++) {
      const k = draw();
      assert.ok(Number.isInteger(k) && k >= 0 && k < 100);
      counts[k] = (counts[k] ?? 0) + 1;
    }
    assert.equal(Math.max(...counts), counts[0]);
    const a = zipfSampler(50, 1, seededRandom(7));
    const b = zipfSampler(50, 1, seededRandom(7));
    for (let i = 0; i < 100; i++) assert.equal(a(), b());
  });
});

describe('procstat parsing', () => {
  test('comm with spaces and parentheses', () => {
    const line =
      '4242 (my (weird) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 89 10 20 0 3 0 98765 1000000 2000 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0';
    const st = parseProcStat(line);
    assert.deepEqual(st, { pid: 4242, ppid: 1, utime: 1234, stime: 567, cutime: 89, cstime: 10, starttime: 98765 });
  });

  test('VmRSS and VmHWM in bytes', () => {
    const mem = parseProcStatusMem('Name:\tnode\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n');
    assert.deepEqual(mem, { rssBytes: 102400 * 1024, hwmBytes: 204800 * 1024 });
  });
});

describe('stats over repeats', () => {
  test('per-field median, min and max; missing counts are zero', () => {
    const s = summarizeRuns([
      { rps: 10, latencyUs: { p99: 300 }, status: { '2xx': 5 }, driver: 'x' },
      { rps: 30, latencyUs: { p99: 100 }, status: { '2xx': 4, '5xx': 2 }, driver: 'x' },
      { rps: 20, latencyUs: { p99: 200 }, status: { '2xx': 6 }, driver: 'x' },
    ]);
    assert.deepEqual(s.median, { rps: 20, latencyUs: { p99: 200 }, status: { '2xx': 5, '5xx': 0 }, driver: 'x' });
    assert.deepEqual(s.min, { rps: 10, latencyUs: { p99: 100 }, status: { '2xx': 4, '5xx': 0 }, driver: 'x' });
    assert.deepEqual(s.max, { rps: 30, latencyUs: { p99: 300 }, status: { '2xx': 6, '5xx': 2 }, driver: 'x' });
    assert.equal(median([4, 1, 3, 2]), 2.5);
  });

  test('median lies between min and max for every field', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ a: fc.double({ noNaN: true, min: -1e9, max: 1e9 }), b: fc.nat() }), { minLength: 1, maxLength: 9 }), (runs) => {
        const s = summarizeRuns(runs);
        return s.min.a <= s.median.a && s.median.a <= s.max.a && s.min.b <= s.median.b && s.median.b <= s.max.b;
      }),
    );
  });
});

// ---- report -------------------------------------------------------------------------

function fakeResult(rps: number, p50Us: number, errors = 0): LoadResult {
  const requests = Math.round(rps * 10);
  return {
    driver: 'pulse-load',
    requests,
    durationS: 10,
    rps,
    latencyUs: { p50: p50Us, p90: p50Us * 2, p99: p50Us * 4, max: p50Us * 10, mean: p50Us * 1.2 },
    status: { '2xx': requests - 3, '3xx': 0, '4xx': 3, '5xx': 0 },
    errors,
    timeouts: errors > 0 ? 1 : 0,
    errorCodes: errors > 0 ? { UND_ERR_HEADERS_TIMEOUT: 1, ECONNRESET: errors - 1 } : {},
    non2xx: 3,
    loadgenCpuPct: 90,
    bytesIn: requests * 211,
  };
}

function fakeSystem(system: string, runs: LoadResult[], extra: SystemResult['extra'] = {}): SystemResult {
  return { system, runs, median: summarizeRuns(runs).median, extra };
}

const results: BenchResults = {
  machine: { cpus: 2, model: 'Test CPU <2 GHz> & co', memGiB: 8, node: 'v20.20.2', pg: '15.8' },
  command: 'pulse bench --repeat 3',
  startedAt: '2026-01-01T00:00:00.000Z',
  headline: { scenario: 'latest', before: 'before', after: 'pulse' },
  scenarios: [
    {
      name: 'latest',
      title: 'Latest reading per device',
      unit: 'req/s',
      systems: [
        fakeSystem('ceiling', [fakeResult(70_000, 600), fakeResult(72_000, 580), fakeResult(71_000, 590)]),
        fakeSystem('pulse', [fakeResult(30_000, 1500), fakeResult(31_000, 1400), fakeResult(29_000, 1600)], {
          dbQueriesPerReq: 0.05,
          cacheHitRate: 0.95,
          serverCpuPct: 98,
          peakRssBytes: 120 * 1024 * 1024,
          dbCpuPct: 12,
        }),
        fakeSystem('before', [fakeResult(300, 90_000), fakeResult(320, 85_000, 7), fakeResult(310, 88_000)], {
          dbQueriesPerReq: 3,
          serverCpuPct: 100,
        }),
      ],
    },
    {
      name: 'ingest',
      title: 'Batched ingest',
      unit: 'values/s',
      systems: [
        fakeSystem('ceiling', [fakeResult(20_000, 1000)], { valuesPerRequest: 3000 }),
        fakeSystem('pulse', [fakeResult(400, 10_000)], { valuesPerRequest: 3000 }),
        fakeSystem('influxdb', [fakeResult(180, 20_000)], { valuesPerRequest: 3000 }),
      ],
    },
  ],
};

/** Every tag closed in order, attributes quoted, no stray `<` or `&` in text. */
function assertWellFormedSvg(svg: string): void {
  assert.ok(svg.startsWith('<svg'), 'starts with <svg');
  assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = tag.exec(svg); m !== null; m = tag.exec(svg)) {
    const between = svg.slice(last, m.index);
    assert.ok(!/[<>]/.test(between), `stray markup before ${m[0]}: ${between}`);
    assert.ok(!/&(?!(lt|gt|amp|quot|apos);)/.test(between), `unescaped & in ${between}`);
    last = tag.lastIndex;
    const [, closing, name, , selfClosing] = m;
    if (selfClosing) continue;
    if (closing) assert.equal(stack.pop(), name, `closing </${name}>`);
    else stack.push(name as string);
  }
  assert.deepEqual(stack, [], 'all tags closed');
  assert.equal(svg.slice(last).trim(), '');
  assert.ok(!/<script|href=|@import|url\(/i.test(svg), 'self-contained');
}

describe('report', () => {
  test('writes report.md with a row per system, report.json and a well-formed chart.svg', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pulse-report-'));
    try {
      const paths = await writeReport(results, dir);
      const md = await readFile(paths.markdown, 'utf8');
      for (const scenario of results.scenarios) {
        assert.ok(md.includes(`## ${scenario.title}`));
        for (const s of scenario.systems) {
          assert.match(md, new RegExp(`^\\| (⚠️ )?${s.system} \\|`, 'm'), `row for ${s.system}`);
        }
      }
      assert.match(md, /^\| ⚠️ before \|.*\*\*.*\(1\/3 runs\)/m, 'the run with errors is flagged in the row');
      assert.match(md, /before\*\*, run 2 of 3: 7 errors \(ECONNRESET 6, UND_ERR_HEADERS_TIMEOUT 1\)/);
      assert.match(md, /^\| pulse \| 30,000 \(29,000–31,000\) \| 1\.50 \| 3\.00 \| 6\.00 \| 15\.0 \|/m);
      assert.match(md, /^\| pulse \| 1,200,000 \(1,200,000–1,200,000\) \|/m, 'values/s = req/s × values per request');
      assert.ok(md.includes('## Before vs after'));
      assert.ok(md.includes('![throughput and p99 per scenario](chart.svg)'));

      assert.deepEqual(JSON.parse(await readFile(paths.json, 'utf8')), JSON.parse(JSON.stringify(results)));

      const svg = await readFile(paths.svg, 'utf8');
      assertWellFormedSvg(svg);
      for (const name of ['ceiling', 'pulse', 'before', 'influxdb']) assert.ok(svg.includes(`>${name}</text>`));
      assert.ok(svg.includes('⚠ errors'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('percent of ceiling', () => {
    const table = renderScenarioTable(results.scenarios[0] as BenchResults['scenarios'][number]);
    assert.match(table, /^\| ceiling \|.*\| 100 \|$/m);
    assert.match(table, /^\| pulse \|.*\| 42 \|$/m);
  });

  test('headline, Markdown and terminal', () => {
    const scenario = results.scenarios[0];
    assert.ok(scenario);
    const [, pulse, beforeSys] = scenario.systems;
    assert.ok(pulse && beforeSys);
    const md = renderHeadline(beforeSys, pulse, { scenario });
    const lines = md.split('\n');
    assert.equal(lines[0], '| Metric | Before | After |');
    assert.equal(lines.length, 2 + 7);
    assert.ok(md.includes('| Response time p50 | 88.0 ms | 1.50 ms |'));
    assert.ok(md.includes('| Throughput | 310 req/s | 30,000 req/s |'));
    assert.ok(md.includes('| Cache hit rate | — | 95.0 % |'));
    const term = renderHeadline(beforeSys, pulse, { scenario, format: 'terminal' });
    assert.ok(!term.includes('|'));
    for (const metric of ['Response time p50', 'Response time p99', 'Throughput', 'Database queries/request', 'Cache hit rate', 'Server CPU', 'Error rate']) {
      assert.match(term, new RegExp(`^${metric}\\s`, 'm'));
    }
  });
});

