import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient, type Packet } from 'mqtt';
import pg from 'pg';
import { bearer, createTestApp, type TestApp } from './helpers/app.ts';
import { requireService } from './helpers/services.ts';
import { until as waitUntil } from './helpers/wait.ts';

const HOST = '127.0.0.1';
const PORT = 1883;
const URL = `mqtt://${HOST}:${PORT}`;

const until = <T>(what: string, fn: () => Promise<T | undefined>) => waitUntil(what, fn, 15_000, 25);

describe('MQTT bridge', { skip: await requireService('Mosquitto (MQTT broker)', HOST, PORT) }, () => {
  const prefix = `pulse-test-${randomBytes(4).toString('hex')}`;
  const deadLetter = `${prefix}-dead-letter`;
  let t: TestApp;
  let key: string;
  let pub: MqttClient;
  let dlq: MqttClient;
  const deadLetters: { topic: string; reason: string; detail: string; payload?: string }[] = [];

  before(async () => {
    t = await createTestApp({
      MQTT_URL: URL,
      MQTT_TOPIC_PREFIX: prefix,
      MQTT_CLIENT_ID: `${prefix}-bridge`,
      MQTT_DEAD_LETTER_TOPIC: deadLetter,
      // the session must outlive a dropped connection for the redelivery test
      MQTT_SESSION_EXPIRY_S: 30,
    });
    key = await t.key('acme');
    pub = await mqtt.connectAsync(URL, { protocolVersion: 5, clientId: `${prefix}-pub` });
    dlq = await mqtt.connectAsync(URL, { protocolVersion: 5, clientId: `${prefix}-dlq` });
    dlq.on('message', (_topic, message) => deadLetters.push(JSON.parse(message.toString())));
    await dlq.subscribeAsync(deadLetter, { qos: 1 });
  });
  after(async () => {
    await pub?.endAsync();
    await dlq?.endAsync();
    await t?.close();
  });

  const topic = (tenant: string, device: string) => `${prefix}/${tenant}/devices/${device}/readings`;
  const publish = (tenant: string, device: string, payload: unknown) =>
    pub.publishAsync(topic(tenant, device), typeof payload === 'string' ? payload : JSON.stringify(payload), { qos: 1 });
  const latest = async (device: string) => {
    const res = await t.app.inject({ url: `/v1/devices/${device}/latest`, headers: bearer(key) });
    return res.statusCode === 200 ? (res.json() as { metrics: Record<string, { ts: string; value: number }> }).metrics : undefined;
  };
  const latestValue = (device: string, metric: string, value: number) =>
    until(`${device}.${metric} = ${value}`, async () => ((await latest(device))?.[metric]?.value === value ? true : undefined));
  const rowsOf = async (device: string) =>
    Number(
      (
        await t.db.pool.query(`select count(*) as n from readings r join devices d on d.id = r.device_id where d.external_id = $1`, [device])
      ).rows[0].n,
    );
  const outcome = async (name: string) => (await t.app.pulse.metrics.mqttMessages.get()).values.find((v) => v.labels.outcome === name)?.value ?? 0;

  it('stores a single reading published to the device topic', async () => {
    await publish('acme', 'therm-1', { metrics: { temp: 21.5, rh: 40 } });
    await latestValue('therm-1', 'temp', 21.5);
    assert.equal((await latest('therm-1'))!.rh!.value, 40);
  });

  it('stores an array payload, each reading at its own ts', async () => {
    const now = Date.now();
    await publish('acme', 'therm-2', [
      { ts: now - 2000, metrics: { temp: 1 } },
      { ts: new Date(now - 1000).toISOString(), device: 'therm-2', metrics: { temp: 2 } },
    ]);
    await latestValue('therm-2', 'temp', 2);
    assert.equal(await rowsOf('therm-2'), 2);
  });

  it('drops malformed messages (counted, dead-lettered) and keeps going', async () => {
    const malformed = await outcome('malformed');
    await publish('acme', 'therm-3', '{"metrics": {"temp": 1');
    await publish('acme', 'therm-3', { metrics: { temp: 'hot' } });
    await publish('acme', 'therm-3', { device: 'someone-else', metrics: { temp: 3 } });
    await publish('acme', 'therm-3', { metrics: { temp: 4 } });
    await latestValue('therm-3', 'temp', 4);
    assert.equal(await rowsOf('therm-3'), 1);
    assert.equal(await outcome('malformed'), malformed + 3);
    const mine = await until('3 dead letters', async () => {
      const found = deadLetters.filter((d) => d.topic === topic('acme', 'therm-3'));
      return found.length >= 3 ? found : undefined;
    });
    assert.deepEqual(mine.map((d) => d.reason).sort(), ['bad-json', 'bad-shape', 'device-mismatch']);
    assert.equal(mine.find((d) => d.reason === 'bad-json')!.payload, '{"metrics": {"temp": 1');
    assert.match(mine.find((d) => d.reason === 'bad-shape')!.detail, /temp/);
  });

  it('drops messages for an unknown tenant', async () => {
    const malformed = await outcome('malformed');
    await publish('nobody-here', 'therm-4', { metrics: { temp: 5 } });
    const letter = await until('the dead letter', async () => deadLetters.find((d) => d.topic === topic('nobody-here', 'therm-4')));
    assert.equal(letter.reason, 'unknown-tenant');
    assert.equal(await outcome('malformed'), malformed + 1);
    const devices = await t.db.pool.query(`select 1 from devices where external_id = 'therm-4'`);
    assert.equal(devices.rowCount, 0);
  });

  it('rejects an unknown device of a tenant without auto-creation', async () => {
    await t.key('strict');
    await t.db.pool.query(`update tenants set auto_create_devices = false where name = 'strict'`);
    const rejected = await outcome('rejected');
    await publish('strict', 'ghost', { metrics: { temp: 6 } });
    const letter = await until('the dead letter', async () => deadLetters.find((d) => d.topic === topic('strict', 'ghost')));
    assert.equal(letter.reason, 'unknown-device');
    assert.equal(await outcome('rejected'), rejected + 1);
  });

  /** The bridge's PUBACKs, as its client sends them. */
  const pubacks = () => {
    const sent: number[] = [];
    const client = t.app.mqtt.mqttClient!;
    const listener = (p: Packet) => p.cmd === 'puback' && sent.push(p.messageId!);
    client.on('packetsend', listener);
    return { sent, stop: () => client.off('packetsend', listener) };
  };
  /** Holds every readings insert until `release` (an external lock, not a mock). */
  const lockReadings = async () => {
    const c = new pg.Client({ connectionString: t.db.url });
    await c.connect();
    await c.query('begin');
    await c.query('lock table readings in exclusive mode');
    return async () => {
      await c.query('commit');
      await c.end();
    };
  };
  const received = (device: string) => {
    const client = t.app.mqtt.mqttClient!;
    return new Promise<number>((resolve) => {
      const listener = (p: Packet) => {
        if (p.cmd === 'publish' && p.topic === topic('acme', device)) {
          client.off('packetreceive', listener);
          resolve(p.messageId!);
        }
      };
      client.on('packetreceive', listener);
    });
  };

  it('acknowledges a message to the broker only after its rows commit', async () => {
    const acks = pubacks();
    const release = await lockReadings();
    try {
      const arrived = received('therm-5');
      await publish('acme', 'therm-5', { metrics: { temp: 7 } });
      const messageId = await arrived;
      // the flush is waiting for the lock, so the message cannot have committed
      await until('the flush to wait on the lock', async () =>
        (await t.db.pool.query(`select 1 from pg_locks where not granted and relation = 'readings'::regclass`)).rowCount ? true : undefined,
      );
      assert.equal(await rowsOf('therm-5'), 0);
      assert.ok(!acks.sent.includes(messageId), 'no PUBACK before commit');
      await release();
      await latestValue('therm-5', 'temp', 7);
      await until('the PUBACK', async () => (acks.sent.includes(messageId) ? true : undefined));
    } finally {
      await release().catch(() => {});
      acks.stop();
    }
  });

  it('leaves a message whose connection dropped before commit for the broker to redeliver', async () => {
    const committed = await outcome('committed');
    const release = await lockReadings();
    const ts = new Date().toISOString();
    try {
      const arrived = received('therm-6');
      await publish('acme', 'therm-6', { ts, metrics: { temp: 8 } });
      await arrived;
      // the bridge's connection dies (as in a crash) while the message is uncommitted
      const redelivered = new Promise<void>((resolve) => {
        const client = t.app.mqtt.mqttClient!;
        client.once('connect', () => {
          client.on('packetreceive', (p) => p.cmd === 'publish' && p.topic === topic('acme', 'therm-6') && resolve());
        });
      });
      t.app.mqtt.mqttClient!.stream.destroy();
      await redelivered;
      await release();
      await latestValue('therm-6', 'temp', 8);
      // both copies commit (the first is not acknowledged: its connection is gone); same ts, so one row
      await until('both copies to commit', async () => ((await outcome('committed')) >= committed + 2 ? true : undefined));
      assert.equal(await rowsOf('therm-6'), 1);
    } finally {
      await release().catch(() => {});
    }
    // and the bridge works on the new connection
    await publish('acme', 'therm-7', { metrics: { temp: 9 } });
    await latestValue('therm-7', 'temp', 9);
  });
});

describe('MQTT bridge with a plain subscription', { skip: await requireService('Mosquitto (MQTT broker)', HOST, PORT) }, () => {
  it('takes readings without a share group', async () => {
    const prefix = `pulse-test-${randomBytes(4).toString('hex')}`;
    const t = await createTestApp({ MQTT_URL: URL, MQTT_TOPIC_PREFIX: prefix, MQTT_SHARE_GROUP: '', MQTT_CLIENT_ID: `${prefix}-bridge`, MQTT_SESSION_EXPIRY_S: 0 });
    const pub = await mqtt.connectAsync(URL, { protocolVersion: 5, clientId: `${prefix}-pub` });
    try {
      const key = await t.key('plain');
      await pub.publishAsync(`${prefix}/plain/devices/d1/readings`, JSON.stringify({ metrics: { v: 1.5 } }), { qos: 1 });
      await until('the reading', async () => {
        const res = await t.app.inject({ url: '/v1/devices/d1/latest', headers: bearer(key) });
        return res.statusCode === 200 && res.json().metrics.v?.value === 1.5 ? true : undefined;
      });
    } finally {
      await pub.endAsync();
      await t.close();
    }
  });
});

describe('MQTT bridge when flushes fail', { skip: await requireService('Mosquitto (MQTT broker)', HOST, PORT) }, () => {
  it('retries without acknowledging, then commits and acknowledges once the database is back', async () => {
    const prefix = `pulse-test-${randomBytes(4).toString('hex')}`;
    // a locked table plus a short statement timeout: every flush fails (503) until the lock goes
    const t = await createTestApp({ MQTT_URL: URL, MQTT_TOPIC_PREFIX: prefix, MQTT_CLIENT_ID: `${prefix}-bridge`, MQTT_SESSION_EXPIRY_S: 0, DB_STATEMENT_TIMEOUT_MS: 100 });
    const pub = await mqtt.connectAsync(URL, { protocolVersion: 5, clientId: `${prefix}-pub` });
    const locker = new pg.Client({ connectionString: t.db.url });
    const retried = async () => (await t.app.pulse.metrics.mqttMessages.get()).values.find((v) => v.labels.outcome === 'retried')?.value ?? 0;
    const sent: number[] = [];
    t.app.mqtt.mqttClient!.on('packetsend', (p) => p.cmd === 'puback' && sent.push(p.messageId!));
    try {
      const key = await t.key('flaky');
      await locker.connect();
      await locker.query('begin');
      await locker.query('lock table readings in exclusive mode');
      const arrived = new Promise<number>((resolve) =>
        t.app.mqtt.mqttClient!.on('packetreceive', (p) => p.cmd === 'publish' && resolve(p.messageId!)),
      );
      await pub.publishAsync(`${prefix}/flaky/devices/f1/readings`, JSON.stringify({ metrics: { v: 42 } }), { qos: 1 });
      const messageId = await arrived;
      await until('two failed flushes', async () => ((await retried()) >= 2 ? true : undefined));
      assert.ok(!sent.includes(messageId), 'no PUBACK while the rows are not committed');
      await locker.query('commit');
      await until('the reading', async () => {
        const res = await t.app.inject({ url: '/v1/devices/f1/latest', headers: bearer(key) });
        return res.statusCode === 200 && res.json().metrics.v?.value === 42 ? true : undefined;
      });
      await until('the PUBACK', async () => (sent.includes(messageId) ? true : undefined));
      const rows = await t.db.pool.query(`select count(*)::int as n from readings r join devices d on d.id = r.device_id where d.external_id = 'f1'`);
      assert.equal(rows.rows[0].n, 1);
    } finally {
      await locker.end().catch(() => {});
      await pub.endAsync();
      await t.close();
    }
  });
});
