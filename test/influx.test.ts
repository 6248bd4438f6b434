import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { InfluxDB, Point } from '@influxdata/influxdb-client';
import { bearer, createTestApp, withoutAsOf, type TestApp } from './helpers/app.ts';

describe('InfluxDB line protocol', () => {
  let t: TestApp;
  let key: string;
  let url: string;
  before(async () => {
    t = await createTestApp();
    key = await t.key('influx', ['write', 'read']);
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(t.app.server.address() as { port: number }).port}`;
  });
  after(() => t.close());

  const latest = async (device: string) => (await t.app.inject({ url: `/v1/devices/${device}/latest`, headers: bearer(key) })).json();

  it('takes writes from the official InfluxDB 2.x client unchanged', async () => {
    const writeApi = new InfluxDB({ url, token: key }).getWriteApi('my-org', 'my-bucket', 'ns');
    const ts = new Date(Date.UTC(2026, 10, 20, 12));
    writeApi.writePoint(new Point('weather').tag('device', 'client-1').tag('site', 'roof').floatField('temp', 21.5).intField('hum', 40).timestamp(ts));
    writeApi.writePoint(new Point('power').tag('device', 'client-1').booleanField('on', true).uintField('watts', 1200).timestamp(ts));
    await writeApi.close();
    assert.deepEqual(withoutAsOf(await latest('client-1')), {
      device: 'client-1',
      metrics: {
        'power.on': { ts: ts.toISOString(), value: 1 },
        'power.watts': { ts: ts.toISOString(), value: 1200 },
        'weather.hum': { ts: ts.toISOString(), value: 40 },
        'weather.temp': { ts: ts.toISOString(), value: 21.5 },
      },
    });
  });

  it('accepts 1.x /write with Bearer, gzip bodies and each precision', async () => {
    const s = Date.UTC(2026, 10, 20, 13) / 1000;
    const cases = [
      ['s', `${s}`],
      ['ms', `${s * 1000 + 1}`],
      ['us', `${(s * 1000 + 2) * 1000}`],
      ['ns', `${(s * 1000 + 3) * 1000}000`],
    ] as const;
    for (const [precision, stamp] of cases) {
      const res = await fetch(`${url}/write?db=x&precision=${precision}`, {
        method: 'POST',
        headers: { ...bearer(key), 'content-encoding': 'gzip', 'content-type': 'text/plain' },
        body: gzipSync(`m,device=prec-${precision} v=1 ${stamp}\n`),
      });
      assert.equal(res.status, 204, await res.text());
    }
    for (const [precision, , ms] of cases.map(([p, st], i) => [p, st, s * 1000 + i] as const)) {
      assert.equal((await latest(`prec-${precision}`)).metrics['m.v'].ts, new Date(ms).toISOString());
    }
  });

  it('parses escapes; names outside the metric charset get a clear 422', async () => {
    const ok = 'cpu,device=esc-1,note=a\\,b\\=c\\ d usage_idle=1.5,load\\=1=2i 1795000000000000000\n';
    assert.equal(ok.includes('\\,'), true);
    const res = await fetch(`${url}/api/v2/write?org=o&bucket=b&precision=ns`, { method: 'POST', headers: { authorization: `Token ${key}` }, body: ok });
    assert.equal(res.status, 422, 'load=1 is not a valid metric name');
    const good = 'cpu,device=esc-1,note=a\\,b\\=c\\ d usage_idle=1.5,load.1=2i 1795000000000000000\n';
    const res2 = await fetch(`${url}/api/v2/write?org=o&bucket=b&precision=ns`, { method: 'POST', headers: { authorization: `Token ${key}` }, body: good });
    assert.equal(res2.status, 204);
    assert.deepEqual(Object.keys((await latest('esc-1')).metrics).sort(), ['cpu.load.1', 'cpu.usage_idle']);
    const spaced = await fetch(`${url}/write`, { method: 'POST', headers: { authorization: `Token ${key}` }, body: 'my\\ meas,device=esc-2 v=1\n' });
    assert.equal(spaced.status, 422);
    assert.match(((await spaced.json()) as { errors: { detail: string }[] }).errors[0]!.detail, /metric name 'my meas.v'/);
  });

  it('rejects string fields and bad lines with a clear 400 naming the line, writing nothing', async () => {
    const res = await fetch(`${url}/api/v2/write?org=o&bucket=b`, {
      method: 'POST',
      headers: { authorization: `Token ${key}` },
      body: 'm,device=str-1 v=1 1795000000000000000\nm,device=str-1 name="x" 1795000000000000000\n',
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { message: string; type: string };
    assert.match(body.message, /^line 2: /);
    assert.equal(body.type, '/problems/bad-request');
    assert.equal((await t.app.inject({ url: '/v1/devices/str-1/latest', headers: bearer(key) })).statusCode, 404);
  });

  it('needs the write scope', async () => {
    const readOnly = await t.key('influx', ['read']);
    const res = await fetch(`${url}/write`, { method: 'POST', headers: { authorization: `Token ${readOnly}` }, body: 'm,device=x v=1' });
    assert.equal(res.status, 403);
    const none = await fetch(`${url}/write`, { method: 'POST', body: 'm,device=x v=1' });
    assert.equal(none.status, 401);
  });
});
