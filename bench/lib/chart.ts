/**
 * chart.svg: per scenario, horizontal bars of throughput (with the min–max range of
 * the runs as a whisker) and of p99 latency, one bar per system, same colour per
 * system throughout. Self-contained: no scripts, no external fonts or styles, a white
 * background so it reads on GitHub's dark theme too.
 */
import {
  formatInt,
  formatMs,
  runsWithErrors,
  throughputOf,
  throughputRange,
  type BenchResults,
  type ScenarioResult,
} from './report-model.ts';

const WIDTH = 960;
const LABEL_W = 170;
const PANEL_GAP = 40;
const VALUE_ROOM = 120;
const ROW_H = 22;
const BAR_H = 15;
const FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";

const FIXED_COLOURS: Record<string, string> = {
  ceiling: '#9e9e9e',
  pulse: '#1f77b4',
  before: '#d62728',
  influxdb: '#9467bd',
};
const PALETTE = ['#2ca02c', '#ff7f0e', '#17becf', '#8c564b', '#e377c2', '#bcbd22', '#7f7f7f', '#aec7e8'];

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&${{ '<': 'lt', '>': 'gt', '&': 'amp', '"': 'quot', "'": 'apos' }[c]};`);
}

function coloursFor(systems: string[]): Map<string, string> {
  const out = new Map<string, string>();
  let next = 0;
  for (const s of systems) {
    if (out.has(s)) continue;
    out.set(s, FIXED_COLOURS[s] ?? PALETTE[next++ % PALETTE.length] ?? '#333333');
  }
  return out;
}

function text(x: number, y: number, body: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}"${attrs ? ` ${attrs}` : ''}>${escapeXml(body)}</text>`;
}

function rect(x: number, y: number, w: number, h: number, attrs: string): string {
  return `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(0, w).toFixed(1)}" height="${h.toFixed(1)}" ${attrs}/>`;
}

function scenarioBlock(scenario: ScenarioResult, top: number, colours: Map<string, string>): { svg: string[]; height: number } {
  const out: string[] = [];
  const panelW = (WIDTH - LABEL_W - PANEL_GAP - 20) / 2;
  const tpX = LABEL_W;
  const latX = LABEL_W + panelW + PANEL_GAP;
  const barMax = panelW - VALUE_ROOM;
  const tps = scenario.systems.map((s) => ({ s, tp: throughputOf(scenario, s), range: throughputRange(scenario, s) }));
  const tpMax = Math.max(1e-9, ...tps.map((t) => Math.max(t.tp, t.range.max)));
  const p99Max = Math.max(1e-9, ...scenario.systems.map((s) => s.median.latencyUs.p99));

  out.push(text(10, top + 16, scenario.title, 'font-size="15" font-weight="bold"'));
  out.push(text(tpX, top + 36, `Throughput (${scenario.unit}, median of runs; whisker = min–max)`, 'font-size="11" fill="#555"'));
  out.push(text(latX, top + 36, 'p99 latency (ms, lower is better)', 'font-size="11" fill="#555"'));
  let y = top + 46;
  for (const { s, tp, range } of tps) {
    const colour = colours.get(s.system) ?? '#333';
    const flagged = runsWithErrors(s).length > 0;
    const mid = y + BAR_H / 2 + 4;
    out.push(text(LABEL_W - 8, mid, s.system, 'font-size="12" text-anchor="end"'));
    const w = (tp / tpMax) * barMax;
    out.push(rect(tpX, y, w, BAR_H, `fill="${colour}"${flagged ? ' stroke="#d00000" stroke-width="2"' : ''}`));
    if (range.max > range.min) {
      const x1 = tpX + (range.min / tpMax) * barMax;
      const x2 = tpX + (range.max / tpMax) * barMax;
      const yc = (y + BAR_H / 2).toFixed(1);
      out.push(`<line x1="${x1.toFixed(1)}" y1="${yc}" x2="${x2.toFixed(1)}" y2="${yc}" stroke="#222" stroke-width="1.5"/>`);
    }
    const valueX = tpX + Math.max(w, range.max > 0 ? (range.max / tpMax) * barMax : 0) + 6;
    out.push(text(valueX, mid, formatInt(tp), 'font-size="11"'));
    if (flagged) out.push(text(valueX + 8 * formatInt(tp).length, mid, '⚠ errors', 'font-size="11" fill="#d00000" font-weight="bold"'));
    const p99 = s.median.latencyUs.p99;
    const lw = (p99 / p99Max) * barMax;
    out.push(rect(latX, y, lw, BAR_H, `fill="${colour}" fill-opacity="0.75"`));
    out.push(text(latX + lw + 6, mid, `${formatMs(p99)} ms`, 'font-size="11"'));
    y += ROW_H;
  }
  const axisTop = top + 44;
  out.push(`<line x1="${tpX}" y1="${axisTop}" x2="${tpX}" y2="${y}" stroke="#999"/>`);
  out.push(`<line x1="${latX}" y1="${axisTop}" x2="${latX}" y2="${y}" stroke="#999"/>`);
  return { svg: out, height: y - top + 18 };
}

export function renderChartSvg(results: BenchResults): string {
  const systems = results.scenarios.flatMap((sc) => sc.systems.map((s) => s.system));
  const colours = coloursFor(systems);
  const body: string[] = [];
  body.push(text(10, 22, `pulse bench — ${results.startedAt}`, 'font-size="17" font-weight="bold"'));
  const m = results.machine;
  body.push(text(10, 40, `${m.cpus} × ${m.model}, ${m.memGiB} GiB, Node ${m.node}, PostgreSQL ${m.pg}`, 'font-size="11" fill="#555"'));

  // Legend, wrapped.
  let lx = 10;
  let ly = 58;
  for (const [name, colour] of colours) {
    const w = 22 + name.length * 7 + 16;
    if (lx + w > WIDTH - 10) {
      lx = 10;
      ly += 18;
    }
    body.push(rect(lx, ly, 12, 12, `fill="${colour}"`));
    body.push(text(lx + 17, ly + 10.5, name, 'font-size="12"'));
    lx += w;
  }

  let top = ly + 26;
  for (const scenario of results.scenarios) {
    const block = scenarioBlock(scenario, top, colours);
    body.push(...block.svg);
    top += block.height;
  }
  if (results.scenarios.length === 0) {
    body.push(text(10, top + 16, 'no scenarios', 'font-size="12"'));
    top += 30;
  }
  const height = Math.ceil(top + 10);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="${escapeXml(FONT)}" role="img">`,
    `<title>${escapeXml(`pulse bench ${results.startedAt}`)}</title>`,
    `<rect x="0" y="0" width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
