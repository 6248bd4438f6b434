import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { copyStatement, headerLine, type ExportDevice, type ExportSpec } from './export-sql.ts';

/**
 * gzip level 1: compression runs on the job's critical path, and level 1 is several
 * times faster than the default 6 for files only slightly larger.
 */
const GZIP_LEVEL = 1;

export function reportPath(dir: string, id: string, format: string): string {
  return join(dir, `${id}.${format}.gz`);
}

async function write(out: Writable, chunk: Buffer | string): Promise<void> {
  if (!out.write(chunk)) await once(out, 'drain');
}

/**
 * Streams the report into `path`: per device one COPY (PostgreSQL formats the lines),
 * through gzip, into `<path>.tmp`, renamed when complete so a reader never sees a partial
 * file. Memory stays constant: chunks flow with backpressure. Returns the data lines and
 * the gzip file's size.
 */
export async function writeReportFile(
  client: pg.ClientBase,
  devices: ExportDevice[],
  spec: ExportSpec,
  path: string,
  signal: AbortSignal,
): Promise<{ rows: number; bytes: number }> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp`;
  const gzip = createGzip({ level: GZIP_LEVEL });
  const written = pipeline(gzip, createWriteStream(tmp));
  let rows = 0;
  try {
    const header = headerLine(spec);
    if (header) await write(gzip, header);
    // no metric set holds a requested metric: no reading can match
    if (spec.sets.length > 0) {
      for (const device of devices) {
        signal.throwIfAborted();
        const copy = client.query(copyTo(copyStatement(device, spec)));
        for await (const chunk of copy) await write(gzip, chunk as Buffer);
        rows += copy.rowCount;
      }
    }
    gzip.end();
    await written;
    await rename(tmp, path);
  } catch (err) {
    gzip.destroy();
    await written.catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  return { rows, bytes: (await stat(path)).size };
}

/** The gzip file, or null when it is gone. */
export async function openReportFile(path: string): Promise<{ stream: NodeJS.ReadableStream; size: number } | null> {
  try {
    // opened first: an expiry sweep deleting the file from now on does not cut the download
    const handle = await open(path, 'r');
    const { size } = await handle.stat().catch(async (err: unknown) => {
      await handle.close();
      throw err;
    });
    return { stream: handle.createReadStream(), size };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
