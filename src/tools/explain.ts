import type { Database } from '../infra/db.ts';
import { ExplainDb, indexesUsed, readingsSeqScans, walkPlan, type PlanNode } from '../infra/explain.ts';
import * as repo from '../modules/readings/repository.ts';
import { readDone } from '../modules/rollups/repository.ts';
import { planRead } from '../modules/stats/plan.ts';
import * as stats from '../modules/stats/repository.ts';

interface Sample {
  tenantId: number;
  device: string;
  metric: string;
  tsUs: number;
}

/** A real device with data to explain the hot queries with: the one written to last. */
async function sample(database: Database): Promise<Sample | null> {
  const rows = await database.api.query<{ tenant_id: number; external_id: string; metric: string; ts_us: number }>(
    'explain.sample',
    `select d.tenant_id, d.external_id, l.names[1] as metric, ${repo.TS_OUT('l.ts')} as ts_us
       from latest l join devices d on d.id = l.device_id order by l.ts desc limit 1`,
  );
  const r = rows[0];
  return r ? { tenantId: r.tenant_id, device: r.external_id, metric: r.metric, tsUs: r.ts_us } : null;
}

function render(node: PlanNode, depth = 0, out: string[] = []): string[] {
  const on = node['Relation Name'] ? ` on ${node['Relation Name']}` : '';
  const using = node['Index Name'] ? ` using ${node['Index Name']}` : '';
  const rows = node['Actual Rows'] !== undefined ? ` rows=${node['Actual Rows']}×${node['Actual Loops'] ?? 1}` : '';
  const time = node['Actual Total Time'] !== undefined ? ` time=${node['Actual Total Time']} ms` : '';
  const removed = node['Rows Removed by Filter'] ? ` filtered=${node['Rows Removed by Filter']}` : '';
  out.push(`${'  '.repeat(depth)}-> ${node['Node Type']}${on}${using}${rows}${removed}${time}`);
  for (const child of node.Plans ?? []) render(child, depth + 1, out);
  return out;
}

function verdict(plan: PlanNode): string {
  // a scan that never ran (a partition the executor pruned, such as readings_default) costs nothing
  const seq = readingsSeqScans(plan).filter((n) => (n['Actual Loops'] ?? 1) > 0);
  const nodes = [...walkPlan(plan)];
  const scanned = nodes
    .filter((n) => /Scan/.test(n['Node Type']) && /^readings/.test(n['Relation Name'] ?? ''))
    .reduce((sum, n) => sum + (n['Actual Rows'] ?? 0) * (n['Actual Loops'] ?? 1) + (n['Rows Removed by Filter'] ?? 0), 0);
  const returned = plan['Actual Rows'] ?? 0;
  const indexes = indexesUsed(plan);
  if (seq.length) return `BAD: sequential scan of ${seq.map((n) => n['Relation Name']).join(', ')}`;
  return `ok: ${indexes.length ? `indexes ${indexes.slice(0, 3).join(', ')}${indexes.length > 3 ? ', …' : ''}` : 'no index needed'}; readings rows scanned ${scanned}, rows returned ${returned}`;
}

/**
 * `pulse explain`: EXPLAIN (ANALYZE, BUFFERS) of every hot query, with the repository's
 * own SQL and real parameters, on the current database, each with a one-line verdict.
 */
export async function explainHotQueries(database: Database): Promise<string> {
  const s = await sample(database);
  if (!s) return 'no readings yet: write some (or `pulse seed`) and run again\n';
  const day = 86_400e6;
  const queries: [string, (db: ExplainDb) => Promise<unknown>][] = [
    ['latest of a device', (db) => repo.latestOfDevice(db, s.tenantId, s.device)],
    ['dashboard (active, 1 day, 100)', (db) => repo.dashboard(db, s.tenantId, 'active', s.tsUs - day, 100)],
    // the first page as the service asks for it: the last two days first
    ['range page (one metric, 100)', (db) => repo.rangePage(db, s.tenantId, s.device, s.metric, s.tsUs - 2 * day, s.tsUs + 1, 100)],
    ['range page (all metrics, 100)', (db) => repo.rangePage(db, s.tenantId, s.device, null, s.tsUs - 2 * day, s.tsUs + 1, 100)],
    ['range page, whole history (sparse data fallback)', (db) => repo.rangePage(db, s.tenantId, s.device, s.metric, 0, s.tsUs + 1, 100)],
  ];
  // stats as the service plans them: rollups below the watermark, raw readings for the rest
  const doneUs = await readDone(database.api);
  const hourly = planRead(s.tsUs - 30 * day, s.tsUs + 1, '1h', doneUs);
  queries.push(
    ['hourly stats of a device, 30 days', (db) => stats.deviceStats(db, s.tenantId, s.device, s.metric, '1h', hourly)],
    ['hourly stats of the fleet (active devices, the default), 30 days', (db) => stats.fleetStats(db, s.tenantId, 'active', s.metric, '1h', hourly)],
    ['hourly stats of the fleet (any status), 30 days', (db) => stats.fleetStats(db, s.tenantId, null, s.metric, '1h', hourly)],
    ['hourly stats of a device, 30 days, raw only (ROLLUPS_ENABLED=false)', (db) => stats.deviceStats(db, s.tenantId, s.device, s.metric, '1h', planRead(s.tsUs - 30 * day, s.tsUs + 1, '1h', null))],
  );
  const out: string[] = [`device ${s.device}, metric ${s.metric}\n`];
  for (const [title, run] of queries) {
    const db = new ExplainDb(database.api, true);
    await run(db);
    const q = db.explained[0]!;
    out.push(`## ${title} (${q.name}) — ${q.executionMs?.toFixed(2)} ms`, `   ${verdict(q.plan)}`, ...render(q.plan).map((l) => `   ${l}`), '');
  }
  return `${out.join('\n')}\n`;
}
