import { Readable } from 'node:stream';
import { STATS_LATE_US } from '../../infra/cache.ts';
import { rollbackAndRelease, type Database, type Db } from '../../infra/db.ts';
import { problem } from '../../http/errors.ts';
import type { KeyIdentity } from '../keys/repository.ts';
import { latestParams, namesLiteral, type NewestValues } from '../readings/repository.ts';
import type { ReadingInput } from '../readings/types.ts';
import { checkReading } from '../readings/validate.ts';
import { markLateSessionsInWindows } from '../sessions/late.ts';
import { deviceKey, resolveDevices, unknownDevices, type IngestCaches } from './commit.ts';
import * as repo from './import-repository.ts';
import { ChunkWriter, newChunk, type Chunk } from './chunk-writer.ts';
import { ImportParseError } from './import-error.ts';
import { MetricSets } from './metric-sets.ts';
import { parseCsv } from './csv.ts';
import { parseNdjson } from './ndjson.ts';

const BATCH = 5000;
/**
 * Rows per COPY at most. A chunk under a savepoint is a subtransaction (at most
 * IMPORT_SAVEPOINTS of them: ChunkWriter), so large chunks let more of an import take the
 * cheap savepoint path, while the memory held stays a few MB and a chunk that must be
 * merged stays cheap to redo. The first chunks are smaller (one batch, then doubling) so
 * that COPY starts early.
 */
const CHUNK = 20_000;
const YIELD_EVERY = 1000;

export interface ImportResult {
  readings: number;
  values: number;
  devices: number;
  seconds: number;
}

export interface ImportOptions {
  maxFutureSkewUs: number;
  /** Chunks written under a savepoint before the import probes instead (IMPORT_SAVEPOINTS). */
  maxSavepoints: number;
  /**
   * Runs after the import commits and before it is answered (cache eviction); `created`:
   * it created devices; `late`: devices it wrote a reading older than STATS_LATE_US.
   */
  afterCommit?: (devices: string[], created: boolean, late: string[]) => Promise<void>;
  /**
   * The process's device and metric-set ids (direct writes only: IngestCaches): known
   * devices cost no lookup, and this write's are remembered once it commits.
   */
  caches?: IngestCaches;
}

/** What the import keeps per device: its id, the span it wrote, and the newest value per metric (for `latest`). */
interface DeviceState {
  id: number;
  lo: number;
  hi: number;
  last: number;
  newest: NewestValues;
}

/**
 * Streams an NDJSON or CSV body into PostgreSQL in one transaction (all or nothing) in
 * bounded memory. Each parsed batch gets its device and metric-set ids (cached for the
 * import; missing ones are created set-based in the transaction), and each chunk of rows
 * is COPYed (binary) straight into readings while the next one is parsed. A chunk that
 * collides with stored readings is merged instead (ChunkWriter). Memory grows with the
 * number of distinct devices and (device, metric) pairs, never with the number of rows.
 */
export async function importReadings(
  database: Database,
  auth: KeyIdentity,
  format: 'ndjson' | 'csv',
  body: AsyncIterable<Buffer>,
  opts: ImportOptions,
): Promise<ImportResult> {
  const nowUs = Date.now() * 1000;
  const limits = { nowUs, maxFutureSkewUs: opts.maxFutureSkewUs };
  const parse = format === 'csv' ? parseCsv : parseNdjson;
  // a failed import drains the rest of a request body instead: destroying it mid-upload
  // left the connection open (and the server unable to shut down) until the request timed out
  const source = body instanceof Readable ? body.iterator({ destroyOnReturn: false }) : body;
  const batches = parse(source, { batchSize: BATCH, nowUs, check: (r) => checkReading(r, limits) });
  try {
    return await writeDirect(database, auth, batches, opts);
  } catch (err) {
    if (body instanceof Readable) body.resume();
    if (err instanceof ImportParseError) {
      throw problem('invalid-readings', `line ${err.line}: ${err.detail}; nothing was imported.`, { line: err.line });
    }
    throw err;
  }
}

/**
 * Writes batches of checked readings as an import does (above): one transaction, chunks
 * COPYed into readings. Also the path of large JSON and line-protocol requests, whose
 * readings are already parsed (INGEST_DIRECT_MIN_READINGS).
 */
export async function writeDirect(
  database: Database,
  auth: KeyIdentity,
  batches: AsyncIterable<ReadingInput[]> | Iterable<ReadingInput[]>,
  opts: ImportOptions,
): Promise<ImportResult> {
  const started = performance.now();
  const client = await database.pools.ingest.connect();
  const tx = database.bind(client, 'ingest');
  // the chunk being written, while the loop parses the next: one connection, one statement at a time
  let inflight: Promise<void> = Promise.resolve();
  try {
    await tx.query('begin', 'begin');
    // an import runs as long as its body streams: the API statement timeout is not for it
    await tx.query('import.no_timeout', 'set local statement_timeout = 0');
    // read once: a target that moves on during the import waits for it to end (src/modules/rollups/refresh.ts)
    const writer = new ChunkWriter(database, client, tx, await repo.rollupPending(tx), opts.maxSavepoints);
    const builder = new RowBuilder(tx, auth, opts.caches ?? null);
    let chunk = newChunk();
    let chunkRows = BATCH;
    let readings = 0;
    let values = 0;

    for await (const batch of batches) {
      const { names, literals } = builder.metricNames(batch);
      if (builder.missing(batch, literals)) {
        // a lookup needs the connection, and must not run inside a chunk's savepoint
        await inflight;
        await writer.leaveSavepoint();
        await builder.resolve(batch, literals);
      }
      for (let i = 0; i < batch.length; i++) {
        values += builder.append(chunk, batch[i]!, names[i]!, literals[i]!);
        // the parser need not wait for I/O (a body already buffered): let the chunk in
        // flight have its statements answered and its data sent while this one is built
        if (i % YIELD_EVERY === YIELD_EVERY - 1) await new Promise(setImmediate);
      }
      readings += batch.length;
      if (chunk.rows.count >= chunkRows) {
        const full = chunk;
        chunk = newChunk();
        chunkRows = Math.min(CHUNK, chunkRows * 2);
        await inflight;
        inflight = writer.write(full);
        inflight.catch(() => {}); // awaited before the next chunk or lookup
      }
    }
    await inflight;
    if (chunk.rows.count) await writer.write(chunk);

    const devices = [...builder.devices.values()].sort((a, b) => a.id - b.id);
    await markLateSessionsInWindows(tx, devices.map((d) => d.id), devices.map((d) => d.lo), devices.map((d) => d.hi));
    // last before the commit: concurrent writes of the same devices wait on these row locks until it
    await upsertLatest(tx, devices);
    await tx.query('commit', 'commit');
    client.release();
    builder.rememberCommitted();
    const lateBefore = Date.now() * 1000 - STATS_LATE_US;
    const late = [...builder.devices].filter(([, d]) => d.lo < lateBefore).map(([name]) => name);
    await opts.afterCommit?.([...builder.devices.keys()], builder.created, late);
    return { readings, values, devices: devices.length, seconds: (performance.now() - started) / 1000 };
  } catch (err) {
    await inflight.catch(() => {}); // the connection is free only once its COPY has ended
    await rollbackAndRelease(client);
    throw err;
  }
}

async function upsertLatest(tx: Db, devices: DeviceState[]) {
  const params = latestParams(devices.map((d): [number, NewestValues] => [d.id, d.newest]));
  if (params.devices.length) await repo.upsertLatest(tx, params);
}

/**
 * Turns parsed readings into rows to COPY: device and metric-set ids by name, looked up
 * once per import (unknown devices are created in the import's transaction when the
 * tenant auto-creates them; otherwise the first batch naming one fails the import: 422,
 * nothing written), and per device what the end of the import needs.
 */
class RowBuilder {
  readonly devices = new Map<string, DeviceState>();
  /** Whether this import created devices. */
  created = false;
  private readonly sets = new Map<string, number>();
  /** The process's (direct writes: known sets need no lookup) or this import's own. */
  private readonly metricSets: MetricSets;
  // the previous reading's metric names, as listed and sorted, and their set literal
  private keys: string[] = [];
  private sorted: string[] = [];
  private literal = '';

  constructor(
    private readonly tx: Db,
    private readonly auth: KeyIdentity,
    private readonly caches: IngestCaches | null,
  ) {
    this.metricSets = caches?.metricSets ?? new MetricSets();
  }

  /**
   * Each reading's sorted metric names and their set literal. Consecutive readings mostly
   * list the same metrics in the same order: those share one array and literal.
   */
  metricNames(batch: ReadingInput[]): { names: string[][]; literals: string[] } {
    const names: string[][] = new Array(batch.length);
    const literals: string[] = new Array(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const keys = Object.keys(batch[i]!.metrics);
      if (!sameKeys(keys, this.keys)) {
        this.keys = keys;
        this.sorted = keys.length > 1 ? [...keys].sort() : keys;
        this.literal = namesLiteral(this.sorted);
      }
      names[i] = this.sorted;
      literals[i] = this.literal;
    }
    return { names, literals };
  }

  /**
   * Whether a reading of the batch names a device or metric set (given as literals) not
   * known yet, to this write or (when it has them) to the process's caches.
   */
  missing(batch: ReadingInput[], literals: string[]): boolean {
    for (let i = 0; i < batch.length; i++) {
      const device = batch[i]!.device;
      if (!this.devices.has(device) && !this.fromCache(device)) return true;
      const literal = literals[i]!;
      if (!this.sets.has(literal) && !this.setFromCache(literal)) return true;
    }
    return false;
  }

  async resolve(batch: ReadingInput[], literals: string[]): Promise<void> {
    const names = new Set<string>();
    for (const r of batch) if (!this.devices.has(r.device) && !this.fromCache(r.device)) names.add(r.device);
    if (names.size) await this.resolveDevices([...names].sort());
    const sets = new Set(literals.filter((l) => !this.sets.has(l)));
    if (sets.size) for (const [lit, id] of await this.metricSets.resolve(this.tx, sets)) this.sets.set(lit, id);
  }

  /** After the commit: this write's device and metric-set ids are durable. */
  rememberCommitted(): void {
    if (!this.caches) return;
    const ids = new Map<string, number>();
    for (const [name, d] of this.devices) ids.set(deviceKey(this.auth.tenant_id, name), d.id);
    this.caches.deviceIds.remember(ids);
    this.metricSets.remember(this.sets);
  }

  private fromCache(device: string): boolean {
    const id = this.caches?.deviceIds.get(deviceKey(this.auth.tenant_id, device));
    if (id === undefined) return false;
    this.devices.set(device, newDevice(id));
    return true;
  }

  private setFromCache(literal: string): boolean {
    const id = this.metricSets.get(literal);
    if (id === undefined) return false;
    this.sets.set(literal, id);
    return true;
  }

  private async resolveDevices(names: string[]) {
    const tenantId = this.auth.tenant_id;
    const keys = new Map(names.map((device) => [deviceKey(tenantId, device), { tenantId, device }]));
    const { ids, created } = await resolveDevices(this.tx, keys, () => this.auth.auto_create_devices);
    const unknown = names.filter((n) => !ids.has(deviceKey(tenantId, n)));
    if (unknown.length) throw unknownDevices(unknown);
    this.created ||= created;
    for (const name of names) this.devices.set(name, newDevice(ids.get(deviceKey(tenantId, name))!));
  }

  /** Adds the reading (its ids resolved; `names` its sorted metric names) to the chunk; returns its number of values. */
  append(chunk: Chunk, r: ReadingInput, names: string[], literal: string): number {
    const dev = this.devices.get(r.device)!;
    const t = r.ts;
    if (t <= dev.last) chunk.unordered = true;
    dev.last = t;
    if (t < dev.lo) dev.lo = t;
    if (t > dev.hi) dev.hi = t;
    for (const name of names) {
      const v = r.metrics[name]!;
      const n = dev.newest.get(name);
      if (!n) dev.newest.set(name, { t, v });
      else if (n.t <= t) {
        n.t = t;
        n.v = v;
      }
    }
    chunk.rows.add(dev.id, t, this.sets.get(literal)!, names, r.metrics);
    chunk.deviceIds.push(dev.id);
    chunk.tsUs.push(t);
    return names.length;
  }
}

const newDevice = (id: number): DeviceState => ({ id, lo: Infinity, hi: -Infinity, last: -Infinity, newest: new Map() });

function sameKeys(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
