/** Re-renders report.md and chart.svg from a report.json (after a report-format change): `node --import tsx bench/render.ts bench/results`. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeReport, type BenchResults } from './lib/report.ts';

const dir = process.argv[2] ?? 'bench/results';
const results = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as BenchResults;
const written = await writeReport(results, dir);
process.stdout.write(`${written.markdown}\n${written.svg}\n`);
