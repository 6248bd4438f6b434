/**
 * Writes a bench run as report.md (one table per scenario, the headline first),
 * report.json (the results document as is) and chart.svg (bench/lib/chart.ts).
 * Runs with socket errors or timeouts are flagged in the row and listed under the
 * table: a fast figure with errors is not a fast figure.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderChartSvg } from './chart.ts';
import {
  CEILING,
  DASH,
  errorRate,
  formatInt,
  formatMiB,
  formatMs,
  formatNumber,
  formatPct,
  fractionOfCeiling,
  non2xxRate,
  optional,
  runsWithErrors,
  throughputOf,
  throughputRange,
  type BenchResults,
  type ScenarioResult,
  type SystemResult,
  type Unit,
} from './report-model.ts';

export * from './report-model.ts';
export { renderChartSvg } from './chart.ts';

function mdCell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function mdTable(header: string[], rows: string[][], align: ('l' | 'r')[]): string {
  const sep = align.map((a) => (a === 'r' ? '---:' : '---'));
  return [header, sep, ...rows].map((r) => `| ${r.map(mdCell).join(' | ')} |`).join('\n');
}

function errorSummary(run: { errors: number; errorCodes?: Record<string, number> }): string {
  const codes = Object.entries(run.errorCodes ?? {})
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code} ${formatInt(n)}`)
    .join(', ');
  return `${formatInt(run.errors)} error${run.errors === 1 ? '' : 's'}${codes ? ` (${codes})` : ''}`;
}

export const SCENARIO_COLUMNS = [
  'System',
  'Throughput median (min–max)',
  'p50 ms',
  'p90 ms',
  'p99 ms',
  'max ms',
  'Errors %',
  'Non-2xx %',
  'DB queries/req',
  'Cache hit %',
  'Server CPU %',
  'Peak RSS MiB',
  '% of ceiling',
] as const;

function scenarioRow(scenario: ScenarioResult, s: SystemResult): string[] {
  const range = throughputRange(scenario, s);
  const m = s.median;
  const bad = runsWithErrors(s);
  const fraction = fractionOfCeiling(scenario, s);
  // no response inside the measured window: its requests take longer than the window
  const silent = m.requests === 0;
  const name = `${bad.length > 0 || silent ? '⚠️ ' : ''}${s.system}${m.driver === 'wrk' ? ' (wrk)' : ''}`;
  const errors = silent
    ? '**no response within the window**'
    : bad.length > 0
      ? `**${formatPct(errorRate(s), 2)}** (${bad.length}/${s.runs.length} runs)`
      : formatPct(errorRate(s), 2);
  const latency = (us: number) => (silent ? '> window' : formatMs(us));
  return [
    name,
    `${formatInt(throughputOf(scenario, s))} (${formatInt(range.min)}–${formatInt(range.max)})`,
    latency(m.latencyUs.p50),
    latency(m.latencyUs.p90),
    latency(m.latencyUs.p99),
    latency(m.latencyUs.max),
    errors,
    formatPct(non2xxRate(s), 2),
    optional(s.extra?.dbQueriesPerReq, (v) => formatNumber(v)),
    optional(s.extra?.cacheHitRate, (v) => formatPct(v)),
    optional(s.extra?.serverCpuPct, (v) => v.toFixed(0)),
    optional(s.extra?.peakRssBytes, formatMiB),
    fraction === null ? DASH : s.system === CEILING ? '100' : formatPct(fraction, 0),
  ];
}

/** One scenario: its table, then flagged runs and load-generator notes. */
export function renderScenarioTable(scenario: ScenarioResult): string {
  const header: string[] = [...SCENARIO_COLUMNS];
  header[1] = `${scenario.unit} median (min–max)`;
  const align: ('l' | 'r')[] = header.map((_, i) => (i === 0 ? 'l' : 'r'));
  const parts = [mdTable(header, scenario.systems.map((s) => scenarioRow(scenario, s)), align)];
  const flagged = scenario.systems.flatMap((s) =>
    s.runs.flatMap((r, i) => (r.errors > 0 ? [`- ⚠️ **${s.system}**, run ${i + 1} of ${s.runs.length}: ${errorSummary(r)}`] : [])),
  );
  if (flagged.length > 0) parts.push(['**Runs with errors** (socket errors or timeouts; not counted as responses):', ...flagged].join('\n'));
  const loadgen = scenario.systems
    .map((s) => `${s.system} ${s.median.loadgenCpuPct.toFixed(0)} %${s.median.driver === 'wrk' ? ' (wrk)' : ''}`)
    .join(', ');
  const db = scenario.systems.filter((s) => s.extra?.dbCpuPct !== undefined);
  const notes = [`Load generator CPU (% of one core): ${loadgen}.`];
  if (db.length > 0) notes.push(`PostgreSQL CPU: ${db.map((s) => `${s.system} ${(s.extra?.dbCpuPct ?? 0).toFixed(0)} %`).join(', ')}.`);
  parts.push(notes.join(' '));
  if (scenario.notes?.length) parts.push(scenario.notes.map((n) => `- ${n}`).join('\n'));
  return parts.join('\n\n');
}

// ---- headline: before vs after --------------------------------------------------------

export type HeadlineFormat = 'markdown' | 'terminal';

export const HEADLINE_METRICS = [
  'Response time p50',
  'Response time p99',
  'Throughput',
  'Database queries/request',
  'Cache hit rate',
  'Server CPU',
  'Error rate',
] as const;

function headlineCells(s: SystemResult, unit: Unit, scenario: ScenarioResult | undefined): string[] {
  const m = s.median;
  const tp = scenario ? throughputOf(scenario, s) : m.rps;
  const silent = m.requests === 0;
  return [
    silent ? '> window' : `${formatMs(m.latencyUs.p50)} ms`,
    silent ? '> window' : `${formatMs(m.latencyUs.p99)} ms`,
    `${formatInt(tp)} ${unit}`,
    optional(s.extra?.dbQueriesPerReq, (v) => formatNumber(v)),
    optional(s.extra?.cacheHitRate, (v) => `${formatPct(v)} %`),
    optional(s.extra?.serverCpuPct, (v) => `${v.toFixed(0)} % of a core`),
    `${formatPct(errorRate(s), 2)} %${runsWithErrors(s).length > 0 ? ' ⚠' : ''}`,
  ];
}

export interface HeadlineOptions {
  unit?: Unit;
  format?: HeadlineFormat;
  /** Gives throughput in values/s for 'values/s' scenarios. */
  scenario?: ScenarioResult;
}

/** Metric | Before | After, as a Markdown table or aligned plain text for the terminal. */
export function renderHeadline(before: SystemResult, after: SystemResult, options: HeadlineOptions = {}): string {
  const unit = options.unit ?? options.scenario?.unit ?? 'req/s';
  const b = headlineCells(before, unit, options.scenario);
  const a = headlineCells(after, unit, options.scenario);
  const rows = HEADLINE_METRICS.map((metric, i) => [metric, b[i] ?? DASH, a[i] ?? DASH]);
  const header = ['Metric', 'Before', 'After'];
  if ((options.format ?? 'markdown') === 'markdown') return mdTable(header, rows, ['l', 'r', 'r']);
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => [...(r[c] ?? '')].length)));
  const line = (r: string[]): string =>
    r
      .map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0)))
      .join('   ')
      .trimEnd();
  return [line(header), widths.map((w) => '─'.repeat(w)).join('   '), ...rows.map(line)].join('\n');
}

function headlineOf(results: BenchResults): string | null {
  const h = results.headline;
  if (h === undefined) return null;
  const scenario = results.scenarios.find((s) => s.name === h.scenario);
  const before = scenario?.systems.find((s) => s.system === h.before);
  const after = scenario?.systems.find((s) => s.system === h.after);
  if (scenario === undefined || before === undefined || after === undefined) return null;
  return [`## Before vs after — ${scenario.title}`, renderHeadline(before, after, { scenario, format: 'markdown' })].join('\n\n');
}

// ---- the whole report ---------------------------------------------------------------

export function renderMarkdown(results: BenchResults, options: { chartFile?: string } = {}): string {
  const m = results.machine;
  const parts = [
    '# pulse bench',
    [
      `- Started: ${results.startedAt}`,
      `- Machine: ${m.cpus} × ${m.model}, ${m.memGiB} GiB RAM, Node ${m.node}, PostgreSQL ${m.pg}`,
      `- Command: \`${results.command}\``,
      '- Latencies are per request, in milliseconds, median of runs per field; the load generator shares the machine.',
    ].join('\n'),
  ];
  const headline = headlineOf(results);
  if (headline !== null) parts.push(headline);
  if (options.chartFile !== undefined) parts.push(`![throughput and p99 per scenario](${options.chartFile})`);
  for (const scenario of results.scenarios) {
    parts.push(`## ${scenario.title}\n\n\`${scenario.name}\`, ${scenario.unit}`, renderScenarioTable(scenario));
  }
  return `${parts.join('\n\n')}\n`;
}

export interface WrittenReport {
  markdown: string;
  json: string;
  svg: string;
}

/** Writes report.md, report.json and chart.svg into `dir` (created if missing). */
export async function writeReport(results: BenchResults, dir: string): Promise<WrittenReport> {
  await mkdir(dir, { recursive: true });
  const paths: WrittenReport = {
    markdown: join(dir, 'report.md'),
    json: join(dir, 'report.json'),
    svg: join(dir, 'chart.svg'),
  };
  await Promise.all([
    writeFile(paths.markdown, renderMarkdown(results, { chartFile: 'chart.svg' })),
    writeFile(paths.json, `${JSON.stringify(results, null, 2)}\n`),
    writeFile(paths.svg, renderChartSvg(results)),
  ]);
  return paths;
}
