import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clearBenchWrites, TENANT } from '../bench/run.ts';
import { seed } from '../src/tools/seed.ts';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';

/** The bench returns its database to the seeded state before each writing scenario's successors. */
describe('bench: clearing what earlier scenarios wrote', () => {
  let t: TestApp;
  let endUs: number;
  let startUs: number;
  before(async () => {
    t = await createTestApp();
    endUs = Math.floor(Date.now() / 3_600_000) * 3_600e6 - 3_600e6;
    ({ startUs } = await seed(t.database, { tenant: TENANT, devices: 4, days: 1, intervalS: 600, metrics: ['temperature', 'humidity'], endUs, rollups: false }));
  });
  after(() => t.close());

  const latest = async () =>
    (
      await t.db.pool.query<{ device: string; metric: string; ts: Date; value: number }>(
        `select d.external_id as device, l.metric, l.ts, l.value from latest_values l join devices d on d.id = l.device_id order by 1, 2`,
      )
    ).rows;

  it('removes readings after the seed and restores latest, including metrics only the scenarios wrote', async () => {
    const seeded = await latest();
    assert.equal(seeded.length, 8);
    const key = await t.key(TENANT);
    const now = new Date().toISOString();
    // a JSON write to a seeded metric, and line protocol's measurement.field names
    const json = await t.app.inject({ method: 'POST', url: '/v1/readings', headers: bearer(key), payload: [{ device: 'sensor-1', ts: now, metrics: { temperature: 99 } }] });
    assert.equal(json.statusCode, 200, json.body);
    const lp = await t.app.inject({ method: 'POST', url: '/write?precision=ms', headers: { ...bearer(key), 'content-type': 'text/plain' }, payload: `env,device=sensor-2 temperature=1 ${Date.now()}\n` });
    assert.equal(lp.statusCode, 204, lp.body);
    assert.notDeepEqual(await latest(), seeded);

    await clearBenchWrites(t.db.url, { startUs, endUs }, () => {});
    assert.deepEqual(await latest(), seeded);
    const after = await t.db.pool.query(`select count(*)::int as n from readings where ts > $1::timestamptz`, [new Date(endUs / 1000)]);
    assert.equal(after.rows[0].n, 0);
  });
});
