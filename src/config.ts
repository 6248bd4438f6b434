import { Type, type Static, type TSchema } from 'typebox';
import { Value } from 'typebox/value';

/**
 * The one source of truth for configuration. Every setting is an environment variable,
 * declared once here with its type, bounds, default and description; the README's
 * configuration table is generated from the same list (`pulse config`).
 */
const Int = (def: number, min: number, max: number, description: string) =>
  Type.Integer({ default: def, minimum: min, maximum: max, description });
const Bool = (def: boolean, description: string) => Type.Boolean({ default: def, description });
const Str = (def: string, description: string) => Type.String({ default: def, minLength: 1, description });

export const ConfigSchema = Type.Object({
  HOST: Str('127.0.0.1', 'Address to listen on.'),
  PORT: Int(8080, 0, 65535, 'HTTP port.'),
  WORKERS: Int(1, 1, 64, 'HTTP processes (node:cluster) sharing the port; `pulse serve --workers N` overrides.'),
  LOG_LEVEL: Type.Union(
    [
      Type.Literal('fatal'),
      Type.Literal('error'),
      Type.Literal('warn'),
      Type.Literal('info'),
      Type.Literal('debug'),
      Type.Literal('trace'),
      Type.Literal('silent'),
    ],
    { default: 'info', description: 'pino log level.' },
  ),
  DATABASE_URL: Type.String({
    default: '',
    description: 'PostgreSQL connection string. Empty: start the embedded PostgreSQL.',
  }),
  EMBEDDED_PG_DIR: Str('.pulse/pg', 'Data folder of the embedded PostgreSQL (reused across restarts).'),
  EMBEDDED_PG_PORT: Int(54329, 1, 65535, 'Port of the embedded PostgreSQL.'),
  MIGRATE_ON_START: Bool(true, 'Apply pending migrations when `serve` starts.'),
  DB_QUERY_POOL_MAX: Int(10, 1, 500, 'Connections for reads and API calls (bulkhead: separate from ingest).'),
  DB_INGEST_POOL_MAX: Int(6, 1, 500, 'Connections for ingest.'),
  DB_POOL_MIN: Int(0, 0, 500, 'Connections each pool keeps open when idle (the idle timeout closes only those above).'),
  DB_POOL_IDLE_MS: Int(30_000, 100, 3_600_000, 'Idle connections are closed after this.'),
  DB_CONNECT_TIMEOUT_MS: Int(5_000, 100, 120_000, 'Waiting for a pooled connection longer than this fails the request with 503.'),
  DB_STATEMENT_TIMEOUT_MS: Int(10_000, 10, 3_600_000, 'PostgreSQL statement_timeout for API queries.'),
  SLOW_QUERY_MS: Int(200, 0, 3_600_000, 'Queries slower than this are logged (warn) with their name.'),
  BODY_LIMIT_BYTES: Int(16 * 1024 * 1024, 1024, 1024 * 1024 * 1024, 'Largest accepted JSON request body (413 above).'),
  MAX_READINGS_PER_REQUEST: Int(10_000, 1, 1_000_000, 'Largest number of readings in one JSON write (413 above).'),
  MAX_FUTURE_SKEW_S: Int(86_400, 0, 31_536_000, 'Readings stamped further in the future than this are rejected (422).'),
  INGEST_BATCH_MAX_VALUES: Int(20_000, 1, 1_000_000, 'Group commit: a flush starts once this many values are queued…'),
  INGEST_BATCH_MAX_WAIT_MS: Int(0, 0, 10_000, '…or this long after the oldest queued write (0: as soon as a flush slot is free).'),
  INGEST_FLUSH_CONCURRENCY: Int(1, 1, 64, 'Group-commit flushes in flight at once (each holds an ingest connection).'),
  INGEST_BUFFER_MAX_VALUES: Int(500_000, 1, 100_000_000, 'Values queued or being written; past this, writes get 503 + Retry-After at once.'),
  INGEST_BUFFER_MAX_BYTES: Int(64 * 1024 * 1024, 1024, 8 * 1024 * 1024 * 1024, 'Request bytes queued or being written; past this, writes get 503 + Retry-After.'),
  IMPORT_CONCURRENCY: Int(2, 1, 64, 'Streaming NDJSON/CSV imports running at once per process (more: 503 + Retry-After).'),
  LP_DEVICE_TAG: Str('device', 'InfluxDB line protocol: the tag whose value is the device id.'),
  LP_METRIC_NAMING: Type.Union([Type.Literal('measurement.field'), Type.Literal('field')], {
    default: 'measurement.field',
    description: 'InfluxDB line protocol: metric names are `<measurement>.<field>` or just `<field>`.',
  }),
  LP_STRING_FIELDS: Type.Union([Type.Literal('reject'), Type.Literal('ignore')], {
    default: 'reject',
    description: 'InfluxDB line protocol: string fields are an error (400) or dropped.',
  }),
  COMPRESS_RESPONSES: Bool(true, 'Compress responses over 1 KiB with br or gzip when the client accepts it.'),
  KEEP_ALIVE_TIMEOUT_MS: Int(72_000, 1_000, 3_600_000, 'HTTP keep-alive timeout (above typical load balancers’ 60 s).'),
  REQUEST_TIMEOUT_MS: Int(0, 0, 3_600_000, 'Whole-request timeout (0: none, so streaming imports of any size can finish; headers must still arrive within 60 s).'),
  MAX_CONNECTIONS: Int(10_000, 1, 1_000_000, 'Open HTTP connections per process; more are refused.'),
  AUTH_CACHE_TTL_MS: Int(10_000, 0, 600_000, 'How long a verified API key is remembered in memory; a revocation reaches other processes within this.'),
  SHUTDOWN_GRACE_MS: Int(10_000, 0, 600_000, 'On SIGTERM, in-flight requests get this long before the process exits.'),
  MQTT_URL: Type.String({
    default: '',
    description: 'MQTT broker to take readings from (`mqtt://host:1883`, `mqtts://…`; user:password in the URL). Empty: the MQTT bridge is off. See docs/mqtt.md.',
  }),
  MQTT_TOPIC_PREFIX: Type.String({
    default: 'pulse',
    minLength: 1,
    pattern: '^[^#+$\\u0000][^#+\\u0000]*$',
    description: 'MQTT: readings are taken from `<prefix>/<tenant>/devices/<device>/readings`.',
  }),
  MQTT_SHARE_GROUP: Type.String({
    default: 'pulse',
    pattern: '^[^/#+\\u0000]*$',
    description: 'MQTT: shared-subscription group (`$share/<group>/…`) so several pulse instances split the messages. Empty: a plain subscription.',
  }),
  MQTT_CLIENT_ID: Type.String({
    default: '',
    pattern: '^[^\\u0000]{0,128}$',
    description: 'MQTT client id, unique per running instance and stable across its restarts (the broker keeps unacknowledged messages under it). Empty: `pulse-<hostname>` (`-<worker id>` in a cluster worker).',
  }),
  MQTT_SESSION_EXPIRY_S: Int(3600, 0, 4_294_967_295, 'MQTT: how long the broker keeps the session (unacknowledged messages, and shared-group messages routed to it) while pulse is disconnected.'),
  MQTT_MAX_IN_FLIGHT: Int(1000, 1, 65_535, 'MQTT: messages received and not yet acknowledged (advertised as Receive Maximum); reading stops at this many.'),
  MQTT_DEAD_LETTER_TOPIC: Type.String({
    default: '',
    pattern: '^[^#+\\u0000]*$',
    description: 'MQTT: malformed or refused messages are republished here (QoS 1, JSON with the reason). Empty: they are only counted and dropped.',
  }),
});

export type Config = Static<typeof ConfigSchema>;

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    detail: string,
  ) {
    super(`invalid configuration: ${variable} ${detail}`);
    this.name = 'ConfigError';
  }
}

function describe(schema: TSchema): string {
  const s = schema as { minimum?: number; maximum?: number; anyOf?: { const: string }[]; type?: string; pattern?: string };
  if (s.pattern) return `must match /${s.pattern}/`;
  if (s.anyOf) return `must be one of ${s.anyOf.map((a) => a.const).join(', ')}`;
  if (s.type === 'integer') return `must be an integer from ${s.minimum} to ${s.maximum}`;
  if (s.type === 'boolean') return 'must be true or false';
  return 'must be a non-empty string';
}

/** Parses and validates the environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(ConfigSchema.properties)) {
    if (name in overrides) {
      out[name] = (overrides as Record<string, unknown>)[name];
      continue;
    }
    const raw = env[name];
    // empty means "the default", except where empty is a meaningful value (DATABASE_URL, MQTT_*)
    if (raw === undefined || (raw === '' && !Value.Check(schema, ''))) {
      out[name] = (schema as unknown as { default: unknown }).default;
      continue;
    }
    const type = (schema as { type?: string }).type;
    let value: unknown = raw.trim();
    if (type === 'integer') value = /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw;
    if (type === 'boolean') value = /^(true|1|yes)$/i.test(raw) ? true : /^(false|0|no)$/i.test(raw) ? false : raw;
    if (!Value.Check(schema, value)) throw new ConfigError(name, `${describe(schema)} (got ${JSON.stringify(raw)})`);
    out[name] = value;
  }
  return Object.freeze(out) as Config;
}

/** The configuration table for the README and `pulse config`. */
export function configTable(): string {
  const rows = Object.entries(ConfigSchema.properties).map(([name, schema]) => {
    const s = schema as unknown as { default: unknown; description: string };
    return `| \`${name}\` | \`${s.default === '' ? '(empty)' : String(s.default)}\` | ${s.description} |`;
  });
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}
