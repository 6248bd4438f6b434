import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBench } from '../bench/run.ts';
import { SCENARIOS } from '../bench/scenarios/index.ts';
import { adminUrl } from './helpers/db.ts';

/** A smoke run: tiny data, 1 s per scenario; checks structure and that every system answered, never speed. */
describe('pulse bench (smoke)', () => {
  let out: string;
  after(() => rm(out, { recursive: true, force: true }));

  it('runs every scenario against its ceiling, pulse and (where it has the endpoint) before, and writes the report', async () => {
    out = await mkdtemp(join(tmpdir(), 'pulse-bench-'));
    const { results } = await runBench({
      scenarios: null,
      systems: ['ceiling', 'pulse', 'before'],
      durationMs: 1000,
      warmupMs: 300,
      connections: 2,
      workers: 1,
      repeat: 1,
      size: 'tiny',
      out,
      command: 'test',
      quiet: true,
      databaseUrl: adminUrl(),
      dropDatabase: true,
      // the "before" opens a database connection per request: keep it far below max_connections
      maxConnections: 4,
      maxPerRequest: 20,
    });
    assert.deepEqual(results.scenarios.map((s) => s.name), SCENARIOS.map((s) => s.name));
    for (const scenario of results.scenarios) {
      const def = SCENARIOS.find((s) => s.name === scenario.name)!;
      const expected = def.before === false ? ['ceiling', 'pulse'] : ['before', 'ceiling', 'pulse'];
      assert.deepEqual(scenario.systems.map((s) => s.system).sort(), expected);
      for (const system of scenario.systems) {
        const r = system.median;
        assert.ok(r.requests > 0, `${scenario.name}/${system.system} answered nothing`);
        assert.equal(r.status['2xx'], r.requests, `${scenario.name}/${system.system}: non-2xx ${JSON.stringify(r.status)}`);
        assert.equal(r.errors, 0, `${scenario.name}/${system.system}: errors ${JSON.stringify(r.errorCodes)}`);
        // every answer came from the database or from pulse's cache: one of the two was counted
        if (system.system !== 'ceiling') {
          assert.ok((system.extra?.dbQueriesPerReq ?? 0) > 0 || (system.extra?.cacheHitRate ?? 0) > 0, `${scenario.name}/${system.system}: no queries or cache hits counted`);
        }
      }
    }
    const md = await readFile(join(out, 'report.md'), 'utf8');
    assert.match(md, /## Before vs after/);
    for (const s of SCENARIOS) assert.ok(md.includes(s.title), `report lacks ${s.name}`);
    const svg = await readFile(join(out, 'chart.svg'), 'utf8');
    assert.match(svg, /^<svg[\s\S]*<\/svg>\s*$/);
    const json = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
    assert.equal(json.scenarios.length, SCENARIOS.length);
  });
});
