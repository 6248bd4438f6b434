import type { Db } from '../../infra/db.ts';
import * as repo from '../readings/repository.ts';

const MAX_CACHED = 50_000;

/**
 * The metric-set dictionary (sorted metric names → id). Entries never change once
 * created, so this process keeps them in memory: a flush resolves its sets without a
 * round trip once they are known. Bounded; when full it simply starts over.
 */
export class MetricSets {
  private readonly ids = new Map<string, number>();

  /** Ids for the given name-set literals, creating missing sets (in the caller's transaction). */
  async resolve(tx: Db, literals: Iterable<string>): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const missing: string[] = [];
    for (const lit of literals) {
      const id = this.ids.get(lit);
      if (id === undefined) missing.push(lit);
      else out.set(lit, id);
    }
    if (!missing.length) return out;
    const put = (rows: { id: number; names: string[] }[]) => {
      for (const r of rows) out.set(repo.namesLiteral(r.names), r.id);
    };
    put(await repo.findMetricSets(tx, missing));
    let left = missing.filter((l) => !out.has(l));
    if (left.length) put(await repo.insertMetricSets(tx, left));
    left = left.filter((l) => !out.has(l));
    if (left.length) put(await repo.findMetricSets(tx, left)); // created concurrently
    return out;
  }

  /** The cached id of one literal. */
  get(literal: string): number | undefined {
    return this.ids.get(literal);
  }

  /** The cached ids of all the given literals, or null if any is unknown. */
  cached(literals: Iterable<string>): Map<string, number> | null {
    const out = new Map<string, number>();
    for (const lit of literals) {
      const id = this.ids.get(lit);
      if (id === undefined) return null;
      out.set(lit, id);
    }
    return out;
  }

  /** Called after the transaction commits: the new entries are durable, remember them. */
  remember(resolved: Map<string, number>): void {
    if (this.ids.size + resolved.size > MAX_CACHED) this.ids.clear();
    for (const [lit, id] of resolved) this.ids.set(lit, id);
  }
}
