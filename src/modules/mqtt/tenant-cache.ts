import type { Db } from '../../infra/db.ts';
import { findTenantByName, type TenantRow } from './repository.ts';

const MAX_ENTRIES = 10_000;

/**
 * Tenant lookups by name, remembered for `ttlMs` (misses too: a flood of messages for a
 * tenant that does not exist costs one query per TTL, not one per message). Concurrent
 * lookups of one name share a query. Bounded: topic names are chosen by publishers, so
 * the map is cleared rather than allowed to grow past MAX_ENTRIES.
 */
export class TenantCache {
  private readonly entries = new Map<string, { at: number; row: Promise<TenantRow | undefined> }>();

  constructor(
    private readonly db: Db,
    private readonly ttlMs: number,
  ) {}

  get(name: string): Promise<TenantRow | undefined> {
    const now = Date.now();
    const hit = this.entries.get(name);
    if (hit && now - hit.at < this.ttlMs) return hit.row;
    if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
    const row = findTenantByName(this.db, name);
    if (this.ttlMs > 0) {
      this.entries.set(name, { at: now, row });
      // a failed lookup (database down) is not remembered
      row.catch(() => this.entries.get(name)?.row === row && this.entries.delete(name));
    }
    return row;
  }
}
