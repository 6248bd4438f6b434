import type { TestApp } from './app.ts';

/** Statements the app ran, by `name:outcome`, from its own per-statement metrics. */
export async function statementCounts(app: TestApp['app']): Promise<Map<string, number>> {
  const body = (await app.inject({ url: '/metrics' })).body;
  const counts = new Map<string, number>();
  for (const m of body.matchAll(/^pulse_db_query_duration_seconds_count\{([^}]*)\} (\d+)$/gm)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    const k = `${labels.query}:${labels.outcome}`;
    counts.set(k, (counts.get(k) ?? 0) + Number(m[2]));
  }
  return counts;
}

/** NDJSON lines of readings, as an import body. */
export const ndjson = (lines: { device: string; ts?: number; metrics: Record<string, number> }[]) =>
  `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`;
