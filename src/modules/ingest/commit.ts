import type { Db } from '../../infra/db.ts';
import { problem, type Problem } from '../../http/errors.ts';
import { toDevice } from '../devices/view.ts';
import * as repo from '../readings/repository.ts';
import type { ReadingInput } from '../readings/types.ts';
import { emitEvents } from '../webhooks/service.ts';
import type { MetricSets } from './metric-sets.ts';

export interface CommitResult {
  readings: number;
  values: number;
  devices: number;
}

/** One client request's validated readings, as it joins a flush. */
export interface WriteRequest {
  tenantId: number;
  autoCreate: boolean;
  readings: ReadingInput[];
}

export const deviceKey = (tenantId: number, device: string) => `${tenantId}\u0000${device}`;

export const unknownDevices = (unknown: string[]) =>
  problem('unknown-device', `Unknown device(s): ${unknown.slice(0, 10).join(', ')}. Create them first (auto-creation is off for this tenant).`, {
    devices: unknown.slice(0, 100),
  });

/**
 * Device ids by deviceKey; missing devices are created where `creatable` says so (`created`:
 * whether this call created any). Devices neither found nor creatable are left out.
 * Each device this call inserted gets its `device.created` event queued in `tx` (one
 * statement for all, only when it inserted any): it is announced exactly when it commits.
 */
export async function resolveDevices(tx: Db, keys: Map<string, { tenantId: number; device: string }>, creatable: (k: string) => boolean) {
  const ids = new Map<string, number>();
  let created = false;
  const put = (rows: { id: number; tenant_id: number; external_id: string }[]) => {
    for (const r of rows) ids.set(deviceKey(r.tenant_id, r.external_id), r.id);
  };
  const lists = (ks: string[]) => [ks.map((k) => keys.get(k)!.tenantId), ks.map((k) => keys.get(k)!.device)] as const;
  put(await repo.findDeviceIds(tx, ...lists([...keys.keys()])));
  // insert only what is missing: ON CONFLICT still draws identity values, which a
  // blind upsert of every write would burn through
  let missing = [...keys.keys()].filter((k) => !ids.has(k) && creatable(k));
  if (missing.length) {
    const inserted = await repo.insertDevices(tx, ...lists(missing));
    created = inserted.length > 0;
    put(inserted);
    // only what this statement inserted: a device a concurrent writer created is its to announce
    if (created) await emitEvents(tx, 'device.created', inserted.map((r) => ({ tenantId: r.tenant_id, data: toDevice(r) })));
  }
  missing = missing.filter((k) => !ids.has(k));
  // created by a concurrent writer after this statement's snapshot: visible now
  if (missing.length) put(await repo.findDeviceIds(tx, ...lists(missing)));
  return { ids, created };
}

const MAX_CACHED_DEVICES = 200_000;

/**
 * Device ids this process has seen committed (tenant, external id → id). A device deleted
 * since is caught by the write statement's foreign key, and the flush retried uncached.
 */
export class DeviceIds {
  private readonly ids = new Map<string, number>();
  get(key: string) {
    return this.ids.get(key);
  }
  remember(ids: Map<string, number>) {
    if (this.ids.size + ids.size > MAX_CACHED_DEVICES) this.ids.clear();
    for (const [k, v] of ids) this.ids.set(k, v);
  }
  /**
   * Whether `err` is a write refused by a foreign key: a device of this cache was deleted
   * since. Nothing of that write was committed; the cache is cleared, so its devices are
   * looked up again when it runs once more.
   */
  forgetIfDeleted(err: unknown): boolean {
    if ((err as { code?: string }).code !== '23503') return false;
    this.ids.clear();
    return true;
  }
}

/**
 * What writes learn once per process: device ids (committed) and metric-set ids. Shared by
 * the group commit and direct writes (large JSON and line-protocol requests), never by
 * streaming imports, whose bodies cannot be sent again when a cached device turns out
 * deleted (DeviceIds.forgetIfDeleted: the write runs once more).
 */
export interface IngestCaches {
  deviceIds: DeviceIds;
  metricSets: MetricSets;
}

interface Plan {
  devices: Map<string, { tenantId: number; device: string }>;
  autoCreate: Map<number, boolean>;
}

function plan(requests: WriteRequest[]): Plan {
  const devices = new Map<string, { tenantId: number; device: string }>();
  const autoCreate = new Map<number, boolean>();
  for (const req of requests) {
    autoCreate.set(req.tenantId, req.autoCreate);
    for (const r of req.readings) {
      const k = deviceKey(req.tenantId, r.device);
      if (!devices.has(k)) devices.set(k, { tenantId: req.tenantId, device: r.device });
    }
  }
  return { devices, autoCreate };
}

/** Rows to write and each request's outcome, given the device ids. */
function shape(requests: WriteRequest[], deviceIds: Map<string, number>) {
  // merge per (device, ts) across the batch, in arrival order; newest per (device, metric)
  const rows = new Map<string, { d: number; t: number; metrics: Map<string, number> }>();
  const newest = new Map<number, repo.NewestValues>();
  const outcome: (CommitResult | Problem)[] = requests.map((req) => {
    const unknown = [...new Set(req.readings.map((r) => r.device))].filter((d) => !deviceIds.has(deviceKey(req.tenantId, d)));
    if (unknown.length) return unknownDevices(unknown);
    const own = new Set<string>();
    const touched = new Set<number>();
    for (const r of req.readings) {
      const d = deviceIds.get(deviceKey(req.tenantId, r.device))!;
      touched.add(d);
      let deviceNewest = newest.get(d);
      if (!deviceNewest) newest.set(d, (deviceNewest = new Map()));
      const rk = `${d}:${r.ts}`;
      let row = rows.get(rk);
      if (!row) rows.set(rk, (row = { d, t: r.ts, metrics: new Map() }));
      for (const m in r.metrics) {
        const v = r.metrics[m]!;
        row.metrics.set(m, v);
        own.add(`${rk}:${m}`);
        const n = deviceNewest.get(m);
        if (!n || n.t <= r.ts) deviceNewest.set(m, { t: r.ts, v });
      }
    }
    return { readings: req.readings.length, values: own.size, devices: touched.size };
  });
  const shaped = [...rows.values()].map((row) => {
    const names = [...row.metrics.keys()].sort();
    return { d: row.d, t: row.t, set: repo.namesLiteral(names), vals: `{${names.map((n) => row.metrics.get(n)).join(',')}}` };
  });
  shaped.sort((a, b) => a.d - b.d || a.t - b.t);
  return { outcome, shaped, latest: repo.latestParams(newest) };
}

async function write(db: Db, shaped: ReturnType<typeof shape>['shaped'], latest: ReturnType<typeof shape>['latest'], setIds: Map<string, number>) {
  await repo.writeReadings(db, {
    deviceIds: shaped.map((r) => r.d),
    tsUs: shaped.map((r) => r.t),
    sets: shaped.map((r) => setIds.get(r.set)!),
    vals: shaped.map((r) => r.vals),
    latest,
  });
}

/**
 * Commits the readings of many requests (any tenants). When every device and metric set
 * is known to this process, that is one statement and one round trip (rows, latest,
 * late marks for rollups and sessions); otherwise one transaction that resolves (and
 * creates) them first, with set-based statements. Rows
 * merge per (device, ts), the later value of a metric winning, also against stored rows;
 * `latest` only moves forward. A request naming a device that does not exist, for a
 * tenant with auto-creation off, is answered 422 and left out; the others go on.
 */
export async function commitBatch(
  db: Db,
  requests: WriteRequest[],
  metricSets: MetricSets,
  deviceCache: DeviceIds,
): Promise<(CommitResult | Problem)[]> {
  const { devices, autoCreate } = plan(requests);
  const cachedDevices = new Map<string, number>();
  for (const k of devices.keys()) {
    const id = deviceCache.get(k);
    if (id !== undefined) cachedDevices.set(k, id);
  }
  if (cachedDevices.size === devices.size) {
    const { outcome, shaped, latest } = shape(requests, cachedDevices);
    const setIds = metricSets.cached(new Set(shaped.map((r) => r.set)));
    if (setIds) {
      try {
        if (shaped.length) await write(db, shaped, latest, setIds);
        return outcome;
      } catch (err) {
        if (!deviceCache.forgetIfDeleted(err)) throw err; // resolve again below
      }
    }
  }
  let resolved: { ids: Map<string, number>; sets: Map<string, number> } | null = null;
  const outcome = await db.tx(async (tx) => {
    const { ids } = await resolveDevices(tx, devices, (k) => autoCreate.get(devices.get(k)!.tenantId)!);
    const { outcome, shaped, latest } = shape(requests, ids);
    const sets = await metricSets.resolve(tx, new Set(shaped.map((r) => r.set)));
    if (shaped.length) await write(tx, shaped, latest, sets);
    resolved = { ids, sets };
    return outcome;
  });
  // committed: the ids are durable now
  const r = resolved as { ids: Map<string, number>; sets: Map<string, number> } | null;
  if (r) {
    deviceCache.remember(r.ids);
    metricSets.remember(r.sets);
  }
  return outcome;
}
