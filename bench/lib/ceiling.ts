/**
 * The ceiling server: what Fastify 5 on this machine can do with no application work.
 * Every pulse scenario is reported as a fraction of it, so figures compare across
 * machines as ratios.
 *
 *   node --import tsx bench/lib/ceiling.ts --port 0 [--host 127.0.0.1] [--workers 2]
 *
 * Prints `listening <port>` on stdout once every worker accepts connections; exits on
 * SIGTERM/SIGINT.
 *
 *   GET  /ceiling/json?bytes=N   a precomputed JSON body of about N bytes (default 211)
 *   POST /ceiling/write          reads the whole body as bytes (no parse, no I/O), 204
 */
import cluster from 'node:cluster';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import fastify, { type FastifyInstance } from 'fastify';

export const DEFAULT_JSON_BYTES = 211;
const MAX_JSON_BYTES = 4 * 1024 * 1024;
const MAX_CACHED_BODIES = 64;
const WRITE_BODY_LIMIT = 64 * 1024 * 1024;

/**
 * A JSON document shaped like a page of readings, padded to exactly `bytes`
 * (minimum 2: `{}`).
 */
export function jsonBodyOfSize(bytes: number): string {
  const target = Math.max(2, Math.min(MAX_JSON_BYTES, Math.floor(bytes)));
  const open = '{"items":[';
  const close = '],"pad":""}';
  if (target < open.length + close.length) {
    return target < 8 ? '{}' : `{"p":"${'x'.repeat(target - 8)}"}`;
  }
  const items: string[] = [];
  let size = open.length + close.length;
  for (let i = 0; ; i++) {
    const item = JSON.stringify({
      deviceId: `dev-${String(i).padStart(6, '0')}`,
      ts: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(),
      value: Math.round(Math.sin(i) * 1000) / 100,
    });
    const added = item.length + (items.length > 0 ? 1 : 0);
    if (size + added > target) break;
    items.push(item);
    size += added;
  }
  return `${open}${items.join(',')}],"pad":"${'x'.repeat(target - size)}"}`;
}

export interface CeilingOptions {
  /** Body size when the request has no `bytes` parameter. */
  defaultBytes?: number;
}

export function buildCeiling(options: CeilingOptions = {}): FastifyInstance {
  const app = fastify({ logger: false, bodyLimit: WRITE_BODY_LIMIT });
  const defaultBytes = options.defaultBytes ?? DEFAULT_JSON_BYTES;
  const bodies = new Map<number, string>();
  const bodyFor = (bytes: number): string => {
    let body = bodies.get(bytes);
    if (body === undefined) {
      body = jsonBodyOfSize(bytes);
      if (bodies.size >= MAX_CACHED_BODIES) bodies.clear();
      bodies.set(bytes, body);
    }
    return body;
  };
  bodyFor(defaultBytes);

  // The write ceiling measures the HTTP stack, not a JSON parser: keep the raw bytes.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.get<{ Querystring: { bytes?: string } }>('/ceiling/json', async (request, reply) => {
    const raw = request.query.bytes;
    const n = raw === undefined ? defaultBytes : Number.parseInt(raw, 10);
    const bytes = Number.isFinite(n) && n > 0 ? Math.min(n, MAX_JSON_BYTES) : defaultBytes;
    return reply.type('application/json; charset=utf-8').send(bodyFor(bytes));
  });

  app.post('/ceiling/write', async (_request, reply) => reply.code(204).send());

  return app;
}

interface CliArgs {
  port: number;
  host: string;
  workers: number;
  defaultBytes: number;
}

function parseCli(argv: string[]): CliArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      workers: { type: 'string', default: '1' },
      bytes: { type: 'string', default: String(DEFAULT_JSON_BYTES) },
    },
    strict: true,
  });
  const port = Number(values.port);
  const workers = Number(values.workers);
  const defaultBytes = Number(values.bytes);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad --port ${values.port}`);
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`bad --workers ${values.workers}`);
  if (!Number.isInteger(defaultBytes) || defaultBytes < 2) throw new Error(`bad --bytes ${values.bytes}`);
  return { port, host: values.host, workers, defaultBytes };
}

async function serveOne(args: CliArgs): Promise<number> {
  const app = buildCeiling({ defaultBytes: args.defaultBytes });
  const close = (): void => {
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', close);
  process.once('SIGINT', close);
  await app.listen({ port: args.port, host: args.host });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

/** node:cluster primary: workers share one port (even port 0); prints once all listen. */
function servePrimary(args: CliArgs): void {
  let ready = 0;
  let shuttingDown = false;
  for (let i = 0; i < args.workers; i++) {
    const worker = cluster.fork();
    worker.on('message', (msg: unknown) => {
      if (typeof msg === 'object' && msg !== null && 'listening' in msg) {
        ready += 1;
        if (ready === args.workers) process.stdout.write(`listening ${(msg as { listening: number }).listening}\n`);
      }
    });
  }
  cluster.on('exit', (_worker, code) => {
    if (!shuttingDown) {
      process.stderr.write(`ceiling worker exited (${code}); stopping\n`);
      shutdown(1);
    } else if (Object.keys(cluster.workers ?? {}).length === 0) {
      process.exit(0);
    }
  });
  const shutdown = (code = 0): void => {
    if (shuttingDown) return;
    shuttingDown = true;
    const workers = Object.values(cluster.workers ?? {});
    if (workers.length === 0) process.exit(code);
    for (const w of workers) w?.process.kill('SIGTERM');
    setTimeout(() => process.exit(code), 5000).unref();
  };
  process.once('SIGTERM', () => shutdown(0));
  process.once('SIGINT', () => shutdown(0));
}

async function main(): Promise<void> {
  const args = parseCli(process.argv.slice(2));
  if (args.workers > 1 && cluster.isPrimary) {
    servePrimary(args);
    return;
  }
  const port = await serveOne(args);
  if (cluster.isWorker) process.send?.({ listening: port });
  else process.stdout.write(`listening ${port}\n`);
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`ceiling: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
