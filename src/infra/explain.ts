import type { Db, QueryTiming } from './db.ts';

export interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  Plans?: PlanNode[];
  [k: string]: unknown;
}

export interface ExplainedQuery {
  name: string;
  sql: string;
  plan: PlanNode;
  executionMs?: number;
  text?: string;
}

/**
 * A Db that runs each statement under EXPLAIN and records the plan, so the plans checked
 * by tests and printed by `pulse explain` are those of the repository's own SQL, with
 * real parameters. With `analyze`, statements really run (inside a rolled-back
 * transaction when the caller uses tx()).
 */
export class ExplainDb implements Db {
  readonly explained: ExplainedQuery[] = [];
  constructor(
    private readonly inner: Db,
    private readonly analyze = false,
  ) {}

  async query<T extends object>(name: string, sql: string, params: unknown[] = []): Promise<T[]> {
    const opts = this.analyze ? 'analyze, buffers, format json' : 'format json';
    const rows = await this.inner.query<{ 'QUERY PLAN': { Plan: PlanNode; 'Execution Time'?: number }[] }>(
      `explain.${name}`,
      `explain (${opts}) ${sql}`,
      params,
    );
    const top = rows[0]!['QUERY PLAN'][0]!;
    this.explained.push({ name, sql, plan: top.Plan, executionMs: top['Execution Time'] });
    return [] as T[];
  }

  tx<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    return fn(this);
  }

  timed(_timing: QueryTiming): Db {
    return this;
  }
}

export function* walkPlan(node: PlanNode): Generator<PlanNode> {
  yield node;
  for (const child of node.Plans ?? []) yield* walkPlan(child);
}

/** Sequential scans of readings partitions: what the hot queries must never do. */
export function readingsSeqScans(plan: PlanNode): PlanNode[] {
  return [...walkPlan(plan)].filter((n) => n['Node Type'] === 'Seq Scan' && /^readings/.test(n['Relation Name'] ?? ''));
}

export function indexesUsed(plan: PlanNode): string[] {
  return [...new Set([...walkPlan(plan)].map((n) => n['Index Name']).filter((n): n is string => !!n))];
}
