import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import copyStreams from 'pg-copy-streams';
import { rollbackAndRelease, type Database } from '../../infra/db.ts';
import { problem } from '../../http/errors.ts';
import { formatUs } from '../../lib/time.ts';
import type { KeyIdentity } from '../keys/repository.ts';
import { checkReading } from '../readings/validate.ts';
import { markLateImportedSessions } from '../sessions/late.ts';
import { unknownDevices } from './commit.ts';
import * as repo from './import-repository.ts';
import { ImportParseError } from './import-error.ts';
import { namesLiteral } from './metric-sets.ts';
import { parseCsv } from './csv.ts';
import { parseNdjson } from './ndjson.ts';

const BATCH = 5000;

export interface ImportResult {
  readings: number;
  values: number;
  devices: number;
  seconds: number;
}

export interface ImportOptions {
  maxFutureSkewUs: number;
  /** Runs after the import commits and before it is answered (cache eviction); `created`: devices may have been created. */
  afterCommit?: (devices: string[], created: boolean) => Promise<void>;
}

/**
 * Streams an NDJSON or CSV body into PostgreSQL in one transaction (all or nothing) in
 * constant memory: parsed readings are written with COPY into a temporary table as they
 * arrive (device names and metric names as text: no round trip while streaming), then
 * devices and metric sets are created set-based and the rows moved into readings with
 * one INSERT … SELECT that merges with readings already stored. Memory grows with the
 * number of distinct devices and (device, metric) pairs, never with the number of rows.
 */
export async function importReadings(
  database: Database,
  auth: KeyIdentity,
  format: 'ndjson' | 'csv',
  body: AsyncIterable<Buffer>,
  opts: ImportOptions,
): Promise<ImportResult> {
  const started = performance.now();
  const nowUs = Date.now() * 1000;
  const limits = { nowUs, maxFutureSkewUs: opts.maxFutureSkewUs };
  const parse = format === 'csv' ? parseCsv : parseNdjson;
  const batches = parse(body, { batchSize: BATCH, nowUs, check: (r) => checkReading(r, limits) });

  const client = await database.pools.ingest.connect();
  const tx = database.bind(client, 'ingest');
  // per device: the last ts seen (a ts not increasing means a (device, ts) may repeat)
  const lastTs = new Map<string, number>();
  // per (device, metric): the newest value, for `latest`
  const newest = new Map<string, { device: string; metric: string; t: number; v: number }>();
  let mayRepeat = false;
  let readings = 0;
  let values = 0;
  let seq = 0;

  async function* rows(): AsyncGenerator<string> {
    for await (const batch of batches) {
      const lines: string[] = new Array(batch.length);
      for (let i = 0; i < batch.length; i++) {
        const r = batch[i]!;
        const prev = lastTs.get(r.device);
        if (prev !== undefined && prev >= r.ts) mayRepeat = true;
        lastTs.set(r.device, r.ts);
        const names = Object.keys(r.metrics).sort();
        for (const m of names) {
          const k = `${r.device}\u0000${m}`;
          const n = newest.get(k);
          if (!n || n.t <= r.ts) newest.set(k, { device: r.device, metric: m, t: r.ts, v: r.metrics[m]! });
        }
        values += names.length;
        // ids and names are validated to a charset that needs no COPY escaping
        lines[i] = `${seq++}\t${r.device}\t${formatUs(r.ts)}\t${namesLiteral(names)}\t{${names.map((n) => r.metrics[n]).join(',')}}\n`;
      }
      readings += batch.length;
      yield lines.join('');
    }
  }

  try {
    await tx.query('begin', 'begin');
    // an import runs as long as its body streams: the API statement timeout is not for it
    await tx.query('import.no_timeout', 'set local statement_timeout = 0');
    await repo.createStaging(tx);
    await pipeline(Readable.from(rows()), client.query(copyStreams.from(repo.COPY_STAGING)));

    const devices = [...lastTs.keys()];
    if (auth.auto_create_devices) await repo.createMissingDevices(tx, auth.tenant_id);
    else {
      const unknown = await repo.unknownDevices(tx, auth.tenant_id);
      if (unknown.length) throw unknownDevices(unknown);
    }
    await repo.createMissingMetricSets(tx);
    if (mayRepeat) {
      // the same (device, ts) more than once in this import: merge in arrival order, one
      // rank at a time (INSERT … ON CONFLICT may touch a row only once per statement)
      const ranks = await repo.rankRepeats(tx);
      for (let rank = 1; rank <= ranks; rank++) await repo.moveRank(tx, auth.tenant_id, rank);
    } else {
      await repo.moveAll(tx, auth.tenant_id);
    }
    const latest = [...newest.values()];
    await repo.upsertLatestByName(tx, auth.tenant_id, latest.map((l) => l.device), latest.map((l) => l.metric), latest.map((l) => l.t), latest.map((l) => l.v));
    await markLateImportedSessions(tx, auth.tenant_id);
    await tx.query('commit', 'commit');
    client.release();
    await opts.afterCommit?.(devices, auth.auto_create_devices);
    return { readings, values, devices: devices.length, seconds: (performance.now() - started) / 1000 };
  } catch (err) {
    await rollbackAndRelease(client);
    if (err instanceof ImportParseError) {
      throw problem('invalid-readings', `line ${err.line}: ${err.detail}; nothing was imported.`, { line: err.line });
    }
    throw err;
  }
}
