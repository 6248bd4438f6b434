import { setTimeout as sleep } from 'node:timers/promises';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { Db } from '../../infra/db.ts';
import type { Metrics } from '../../infra/metrics.ts';
import { Problem } from '../../http/errors.ts';
import type { WriteBatcher } from '../ingest/batcher.ts';
import { parsePayload, parseTopic, type DropKind } from './payload.ts';
import { TenantCache } from './tenant-cache.ts';

export interface BridgeOptions {
  url: string;
  clientId: string;
  topicPrefix: string;
  /** Shared-subscription group; empty: a plain subscription. */
  shareGroup: string;
  /** Where dropped messages are republished; empty: nowhere. */
  deadLetterTopic: string;
  maxInFlight: number;
  sessionExpiryS: number;
  maxReadings: number;
  maxFutureSkewUs: number;
  tenantCacheMs: number;
}

export interface BridgeDeps {
  batcher: WriteBatcher;
  db: Db;
  metrics: Metrics;
  log: Logger;
}

/** An unacknowledged QoS 1 message of the current connection. */
interface Unacked {
  messageId: number;
  connection: number;
  done: boolean;
}

/** Passed to mqtt.js's handleMessage callback: "go on reading, but send no PUBACK" (see handle). */
const ACK_DEFERRED = new Error('PUBACK deferred until the message is committed');
const LOG_EVERY_MS = 60_000;
const START_WAIT_MS = 10_000;

const backoffMs = (attempt: number) => Math.min(5_000, 100 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random());

/**
 * Takes readings from an MQTT broker into the group-commit batcher.
 *
 * Acknowledgement: a QoS 1 message is PUBACKed only after the transaction holding its rows
 * commits (or after it is dropped as malformed), so a crash before commit means the broker
 * redelivers it. mqtt.js hands messages over one at a time and sends the PUBACK when the
 * handler calls back; waiting for a commit there would serialise the bridge to one message
 * per flush (and stall keep-alive replies meanwhile). So the handler calls back at once with
 * an error, which mqtt.js takes as "send no PUBACK" and goes on reading, and the PUBACK is
 * sent here once the message is done — in arrival order, as MQTT requires.
 *
 * Backpressure: at most `maxInFlight` messages are unacknowledged (Receive Maximum, which
 * the broker honours; and locally, by not handing the next packet back to mqtt.js). A 503
 * from the batcher (buffer full, flush failed) is retried with backoff and never acked
 * meanwhile, so the broker stops sending once the window is full; nothing is held in
 * memory beyond the window. A message whose connection dropped is no longer retried or
 * acked: the broker redelivers it (at-least-once; readings with a `ts` merge on redelivery).
 */
export class MqttBridge {
  private client: MqttClient | null = null;
  /** Bumped when a connection closes: PUBACKs belong to the connection that got the PUBLISH. */
  private connection = 0;
  private unacked: Unacked[] = [];
  private processing = 0;
  private held: (() => void) | null = null;
  private readonly work = new Set<Promise<void>>();
  private readonly stopping = new AbortController();
  private readonly logged = new Map<string, { at: number; suppressed: number }>();
  private readonly tenants: TenantCache;
  private readonly filter: string;

  constructor(
    private readonly opts: BridgeOptions,
    private readonly deps: BridgeDeps,
  ) {
    this.tenants = new TenantCache(deps.db, opts.tenantCacheMs);
    const topic = `${opts.topicPrefix}/+/devices/+/readings`;
    this.filter = opts.shareGroup ? `$share/${opts.shareGroup}/${topic}` : topic;
  }

  /** The live client (tests watch its packets). */
  get mqttClient(): MqttClient | null {
    return this.client;
  }

  /**
   * Connects and subscribes; resolves once subscribed, or after START_WAIT_MS with the
   * client still trying in the background. Rejects if the broker refuses the subscription.
   */
  start(): Promise<void> {
    const { opts, deps } = this;
    const client = mqtt.connect(opts.url, {
      clientId: opts.clientId,
      protocolVersion: 5,
      // a persistent session: unacknowledged messages survive a dropped connection or a crash
      clean: false,
      properties: { sessionExpiryInterval: opts.sessionExpiryS, receiveMaximum: opts.maxInFlight },
      // subscribed on every connect below, with retain handling 1 (no retained replay on resubscribe)
      resubscribe: false,
      reconnectPeriod: 1_000,
      connectTimeout: 10_000,
    });
    this.client = client;
    client.handleMessage = (packet, callback) => this.handle(packet, callback);
    client.on('close', () => this.connectionClosed());
    client.on('error', (err) => this.warnOnce(`client:${err.message}`, { err }, 'MQTT client error; reconnecting'));

    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => {
        deps.log.warn({ url: redact(opts.url), filter: this.filter }, 'MQTT broker not reachable yet; the bridge keeps trying');
        settle();
      }, START_WAIT_MS);
      client.on('connect', (connack) => {
        client.subscribe(this.filter, { qos: 1, rh: 1 }, (err, granted) => {
          const refused = err ?? (granted?.some((g) => g.qos > 2) ? new Error(`the broker refused the subscription to ${this.filter}`) : null);
          if (refused) {
            deps.log.error({ err: refused, filter: this.filter }, 'MQTT subscription failed');
            settle(refused);
            return;
          }
          deps.log.info(
            { url: redact(opts.url), clientId: opts.clientId, filter: this.filter, sessionPresent: connack.sessionPresent },
            'MQTT bridge subscribed',
          );
          settle();
        });
      });
    });
  }

  /**
   * Stops taking messages and waits for those in hand: committed ones are acknowledged,
   * ones still waiting for a retry are left unacknowledged for the broker to redeliver.
   * Must run before the batcher closes.
   */
  async stop(): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.stopping.abort();
    // a shared group would keep routing messages to this session while it is away
    if (this.opts.shareGroup && client.connected) {
      await Promise.race([client.unsubscribeAsync(this.filter).catch(() => {}), sleep(2_000)]);
    }
    // in-flight commits take milliseconds; a dead-letter publish to a broker that went away could take forever
    const drained = await Promise.race([Promise.allSettled([...this.work]).then(() => true), sleep(5_000, false)]);
    await client.endAsync(!drained || !client.connected);
    this.client = null;
  }

  /** mqtt.js's per-message hook; calling back lets it read the next packet. */
  private handle(packet: IPublishPacket, callback: (err?: Error) => void) {
    if (this.stopping.signal.aborted && packet.qos > 0) {
      this.deps.metrics.mqttMessages.inc({ outcome: 'unacked' });
      callback(ACK_DEFERRED); // not taken: the broker keeps it for this session
      return;
    }
    const entry: Unacked | null = packet.qos > 0 ? { messageId: packet.messageId!, connection: this.connection, done: false } : null;
    if (entry) this.unacked.push(entry);
    this.processing++;
    const job = this.process(packet, entry).finally(() => {
      this.processing--;
      this.work.delete(job);
      if (entry) this.acknowledge(entry);
      this.releaseIfRoom();
    });
    this.work.add(job);
    const next = entry ? () => callback(ACK_DEFERRED) : () => callback();
    if (this.full()) this.held = next;
    else next();
  }

  private full() {
    return this.processing >= this.opts.maxInFlight || this.unacked.length >= this.opts.maxInFlight;
  }

  private releaseIfRoom() {
    if (this.held && !this.full()) {
      const next = this.held;
      this.held = null;
      next();
    }
  }

  /** Marks `entry` done and sends the PUBACKs that are due, in arrival order. */
  private acknowledge(entry: Unacked) {
    entry.done = true;
    if (entry.connection !== this.connection) return;
    const client = this.client;
    // not connected: the close handler drops these, mqtt.js would queue the PUBACK for the next connection
    if (!client?.connected) return;
    while (this.unacked[0]?.done) {
      const { messageId } = this.unacked.shift()!;
      // mqtt.js has no public call for a bare PUBACK; this is the one its own handler makes
      (client as unknown as { _sendPacket(p: object): void })._sendPacket({ cmd: 'puback', messageId, reasonCode: 0 });
    }
  }

  private connectionClosed() {
    // PUBACKs for the old connection's messages cannot be sent now: the broker redelivers them
    this.connection++;
    this.unacked = [];
    this.releaseIfRoom();
  }

  /** True while `entry`'s PUBACK can still be sent and the bridge is running. */
  private live(entry: Unacked | null) {
    return !this.stopping.signal.aborted && (entry === null || entry.connection === this.connection);
  }

  /** Never rejects: resolves when the message is committed, dropped or given up on. */
  private async process(packet: IPublishPacket, entry: Unacked | null): Promise<void> {
    const { metrics } = this.deps;
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const topic = parseTopic(packet.topic, this.opts.topicPrefix);
    if (!topic) return this.drop(packet.topic, payload, 'malformed', 'bad-topic', 'the topic is not <prefix>/<tenant>/devices/<device>/readings');
    for (let attempt = 0; ; attempt++) {
      try {
        const tenant = await this.tenants.get(topic.tenant);
        if (!tenant) return await this.drop(packet.topic, payload, 'malformed', 'unknown-tenant', `no tenant named '${topic.tenant}'`);
        const parsed = parsePayload(payload, topic.device, {
          nowUs: Date.now() * 1000,
          maxFutureSkewUs: this.opts.maxFutureSkewUs,
          maxReadings: this.opts.maxReadings,
        });
        if (!parsed.ok) return await this.drop(packet.topic, payload, 'malformed', parsed.kind, parsed.detail);
        await this.deps.batcher.submit({ tenantId: tenant.id, autoCreate: tenant.auto_create_devices, readings: parsed.readings }, payload.length);
        metrics.mqttMessages.inc({ outcome: 'committed' });
        return;
      } catch (err) {
        const transient = !(err instanceof Problem) || err.status === 503;
        if (!transient) {
          const kind: DropKind = err.code === 'unknown-device' ? 'unknown-device' : 'refused';
          return await this.drop(packet.topic, payload, 'rejected', kind, err.detail);
        }
        // buffer full, flush failed or database down: keep the message unacknowledged and retry
        this.warnOnce('retry', { err }, 'MQTT messages cannot be committed now; retrying them (not acknowledged meanwhile)');
        if (!this.live(entry)) {
          metrics.mqttMessages.inc({ outcome: 'unacked' });
          return;
        }
        metrics.mqttMessages.inc({ outcome: 'retried' });
        try {
          await sleep(backoffMs(attempt), undefined, { signal: this.stopping.signal });
        } catch {
          metrics.mqttMessages.inc({ outcome: 'unacked' });
          return; // stopping: left for the broker to redeliver
        }
        if (!this.live(entry)) {
          metrics.mqttMessages.inc({ outcome: 'unacked' });
          return;
        }
      }
    }
  }

  /** Counts, logs (once per kind a minute) and optionally dead-letters a message that will be acknowledged unwritten. */
  private async drop(topic: string, payload: Buffer, outcome: 'malformed' | 'rejected', kind: DropKind, detail: string) {
    this.deps.metrics.mqttMessages.inc({ outcome });
    this.warnOnce(`drop:${kind}`, { topic, kind, detail }, `MQTT message dropped (${kind}); later ones of this kind are counted in pulse_mqtt_messages_total`);
    const dlq = this.opts.deadLetterTopic;
    if (!dlq || !this.client) return;
    const text = payload.toString('utf8');
    const original = Buffer.from(text, 'utf8').equals(payload) ? { payload: text } : { payload_base64: payload.toString('base64') };
    try {
      await this.client.publishAsync(dlq, JSON.stringify({ topic, reason: kind, detail, ...original }), { qos: 1 });
      this.deps.metrics.mqttMessages.inc({ outcome: 'dead_lettered' });
    } catch (err) {
      this.warnOnce('dead-letter', { err, topic: dlq }, 'MQTT dead-letter publish failed');
    }
  }

  private warnOnce(kind: string, fields: Record<string, unknown>, msg: string) {
    const now = Date.now();
    const seen = this.logged.get(kind);
    if (seen && now - seen.at < LOG_EVERY_MS) {
      seen.suppressed++;
      return;
    }
    if (this.logged.size > 1000) this.logged.clear(); // kinds include error messages: keep it bounded
    this.deps.log.warn({ ...fields, suppressedSinceLast: seen?.suppressed ?? 0 }, msg);
    this.logged.set(kind, { at: now, suppressed: 0 });
  }
}

/** The broker URL without its password, for logs. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
