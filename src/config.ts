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
  DB_QUERY_POOL_MAX: Int(10, 1, 500, 'Connections for reads and API calls (bulkhead: separate from ingest); plus a quarter as many (rounded up) for the reads planned generically (device stats).'),
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
  INGEST_DIRECT_MIN_READINGS: Int(1000, 0, 1_000_000, 'A JSON or line-protocol request with at least this many readings is written by COPY in a transaction of its own, as imports are, instead of joining the group commit. 0: never.'),
  INGEST_BUFFER_MAX_VALUES: Int(500_000, 1, 100_000_000, 'Values queued or being written; past this, writes get 503 + Retry-After at once.'),
  INGEST_BUFFER_MAX_BYTES: Int(64 * 1024 * 1024, 1024, 8 * 1024 * 1024 * 1024, 'Request bytes queued or being written; past this, writes get 503 + Retry-After.'),
  IMPORT_CONCURRENCY: Int(2, 1, 64, 'Streaming NDJSON/CSV imports running at once per process (more: 503 + Retry-After).'),
  IMPORT_SAVEPOINTS: Int(48, 0, 60, 'Chunks of an import COPYed under a savepoint (merged if the COPY hits a stored reading); later chunks are first probed for stored readings instead. Under 64: more subtransactions slow every other session while the import runs.'),
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
  CACHE_ENABLED: Bool(true, 'Cache reads (L1 memory; plus L2 Redis with REDIS_URL). false bypasses the cache entirely (the benchmark’s ablation).'),
  CACHE_L1_MAX_BYTES: Int(64 * 1024 * 1024, 1024 * 1024, 64 * 1024 * 1024 * 1024, 'Bytes of answers the in-process L1 cache holds, counted as body + ETag + 256 bytes per entry (least recently used evicted beyond).'),
  CACHE_COMPRESSED_MAX_BYTES: Int(16 * 1024 * 1024, 0, 64 * 1024 * 1024 * 1024, 'Bytes of compressed (br, gzip) forms of cached answers kept in memory, so a cache hit is not compressed again. 0: compress every time.'),
  CACHE_STATIC_TTL_MS: Int(300_000, 100, 86_400_000, 'Cache lifetime of device records and device lists (changes evict them at once).'),
  CACHE_DYNAMIC_TTL_MS: Int(30_000, 100, 3_600_000, 'Cache lifetime of latest values and dashboard answers (writes evict them; see Caching).'),
  CACHE_GRACE_MS: Int(21_600_000, 0, 604_800_000, 'An expired or evicted entry is kept this long, to be served (marked stale) only when the database fails. 0: never serve stale.'),
  CACHE_STALE_TIMEOUT_MS: Int(1_000, 10, 600_000, 'With a stale entry at hand, a database read slower than this is answered with it (marked stale) and finishes in the background.'),
  CACHE_DASHBOARD_DEBOUNCE_MS: Int(1_000, 0, 60_000, 'Writes evict a tenant’s cached dashboards at most once per this interval: the first write at once, later ones at its end. 0: every write.'),
  CACHE_PREFIX: Str('pulse', 'Prefix of cache keys and bus messages; deployments sharing one Redis need different prefixes.'),
  REDIS_URL: Type.String({
    default: '',
    pattern: '^$|^rediss?://',
    description: 'Redis for the shared L2 cache and the bus that evicts every instance’s L1 (`redis://host:6379/0`). Empty: L1 only (single node).',
  }),
  REDIS_TIMEOUT_MS: Int(200, 10, 10_000, 'A Redis command not answered within this fails; the cache then skips Redis for CACHE_L2_BREAKER_MS.'),
  CACHE_L2_BREAKER_MS: Int(5_000, 100, 600_000, 'After a Redis failure the L2 tier is skipped (circuit open) for this long; L1 and the database keep serving.'),
  ROLLUPS_ENABLED: Bool(true, 'Stats read precomputed rollups (raw readings only for partial buckets and recent time) kept up to date by the `rollups.refresh` job every minute. false: stats aggregate raw readings only.'),
  ROLLUP_LAG_MS: Int(60_000, 0, 86_400_000, 'Rollups cover readings older than this (in whole minutes): later time is read raw, so late writes inside it cost no recompute.'),
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
  REPORTS_DIR: Str('.pulse/reports', 'Folder where report files (gzip) are written.'),
  REPORT_TTL_DAYS: Int(7, 1, 3650, 'A report is deleted (status `expired`) this many days after it is ready.'),
  REPORT_MAX_DEVICES: Int(10_000, 1, 1_000_000, 'Most devices in one report, listed or selected by status (400 above).'),
  // 48: an NDJSON line is built by one json_build_object call, and PostgreSQL functions take at most 100 arguments
  REPORT_MAX_METRICS: Int(32, 1, 48, 'Most metrics in one report (400 above).'),
  REPORT_MAX_RANGE_DAYS: Int(366, 1, 36_600, 'Longest `from`–`to` range of one report (400 above).'),
  REPORT_MAX_PENDING: Int(10, 1, 10_000, 'Reports queued or running at once per tenant (429 above).'),
  SMTP_URL: Type.String({
    default: '',
    pattern: '^$|^smtps?://',
    description: 'SMTP server for e-mail (`smtp://user:pass@host:587`, `smtps://…`). Empty: messages are written as .eml files into MAIL_DIR.',
  }),
  MAIL_FROM: Str('pulse <pulse@localhost>', 'Sender of e-mails.'),
  MAIL_DIR: Str('.pulse/mail', 'Without SMTP_URL: folder where e-mails are written as .eml files.'),
  PUBLIC_URL: Type.String({
    default: 'http://127.0.0.1:8080',
    pattern: '^https?://[^/?#\\s]+(/[^?#\\s]*)?$',
    description: 'Base URL under which clients reach this API, for links in e-mails (no trailing query).',
  }),
  WEBHOOK_TIMEOUT_MS: Int(5_000, 100, 60_000, 'A webhook delivery not answered within this fails (and is retried with backoff).'),
  WEBHOOK_ALLOW_PRIVATE: Bool(false, 'Webhooks may target non-public addresses: loopback and `localhost`, private, link-local (cloud metadata), CGNAT, multicast, reserved. false: refused at registration (IP literals, `localhost`) and at delivery (the address connected to).'),
  JOBS_IN_SERVE: Bool(true, '`pulse serve` also runs one background-job worker in-process (in one cluster worker with `--workers N`); `--no-worker` sets false.'),
  JOBS_CONCURRENCY: Int(4, 1, 256, 'Background jobs run at once per worker process.'),
  JOBS_POOL_MAX: Int(6, 3, 500, 'Connections of the job worker (bulkhead: jobs never use the API or ingest pools); at least JOBS_CONCURRENCY + 2.'),
  JOBS_MAX_ATTEMPTS: Int(10, 1, 100, 'Attempts of a session summary or maintenance job before it stays failed (inspect and retry: `pulse jobs`); retries back off exponentially (e^attempt s).'),
  JOBS_POLL_INTERVAL_MS: Int(2_000, 100, 60_000, 'How often the worker looks for jobs scheduled for later (retries, debounced jobs); new jobs arrive at once by LISTEN/NOTIFY.'),
  JOBS_STATEMENT_TIMEOUT_MS: Int(300_000, 10, 3_600_000, 'PostgreSQL statement_timeout for job queries.'),
  JOBS_STALL_AFTER_MS: Int(60_000, 100, 3_600_000, '`pulse worker` /readyz is 503 when a runnable job has waited longer than this and no job finished within it.'),
  JOBS_RECOVERY_INTERVAL_MS: Int(15_000, 100, 600_000, 'How often a worker releases jobs locked by a worker process that died (its database session is gone), so they run again.'),
  WORKER_PORT: Int(8081, 0, 65535, '`pulse worker`: HTTP port of /healthz, /readyz and /metrics.'),
  RETENTION_DAYS: Int(90, 1, 36_500, 'Daily readings partitions older than this many days are dropped (daily `retention` job).'),
  SESSION_COMPLETE_BATCH_MAX: Int(500, 1, 10_000, 'Session completions committed in one transaction (group commit, with their summary jobs).'),
  SESSION_SUMMARY_WINDOW_MS: Int(100, 0, 10_000, 'Completion flushes within a window of this many ms share one summary job (fewer, larger jobs: less database work per session, up to this much more summary lag); 0: a job per flush.'),
  SESSION_COMPLETE_QUEUE_MAX: Int(10_000, 1, 1_000_000, 'Session completions queued or being committed; past this, completions get 503 + Retry-After at once.'),
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
