import cluster from 'node:cluster';
import { hostname } from 'node:os';
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { MqttBridge } from './bridge.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** The MQTT → batcher bridge (registered only when MQTT_URL is set). */
    mqtt: MqttBridge;
  }
}

/**
 * The MQTT bridge: subscribes once the app is ready; on close, stops (acknowledging what
 * has committed) before the batcher closes — Fastify runs onClose hooks in reverse order
 * of registration, and this plugin is registered after (and depends on) 'pulse-batcher'.
 */
export const mqttPlugin = fp(
  async (app: FastifyInstance) => {
    const { config, database, metrics, logger } = app.pulse;
    const bridge = new MqttBridge(
      {
        url: config.MQTT_URL,
        // stable across restarts, so the broker's session (and its unacknowledged messages) is found again
        clientId: config.MQTT_CLIENT_ID || `pulse-${hostname()}${cluster.isWorker ? `-${cluster.worker!.id}` : ''}`,
        topicPrefix: config.MQTT_TOPIC_PREFIX,
        shareGroup: config.MQTT_SHARE_GROUP,
        deadLetterTopic: config.MQTT_DEAD_LETTER_TOPIC,
        maxInFlight: config.MQTT_MAX_IN_FLIGHT,
        sessionExpiryS: config.MQTT_SESSION_EXPIRY_S,
        maxReadings: config.MAX_READINGS_PER_REQUEST,
        maxFutureSkewUs: config.MAX_FUTURE_SKEW_S * 1_000_000,
        tenantCacheMs: config.AUTH_CACHE_TTL_MS,
      },
      { batcher: app.batcher, db: database.api, metrics, log: logger.child({ module: 'mqtt' }) },
    );
    app.decorate('mqtt', bridge);
    app.addHook('onReady', () => bridge.start());
    app.addHook('onClose', () => bridge.stop());
  },
  { name: 'pulse-mqtt', dependencies: ['pulse-batcher'] },
);
