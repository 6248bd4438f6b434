/**
 * Process entry for the load generator.
 *
 *   node --import tsx bench/lib/load-cli.ts '<spec JSON>'
 *   node --import tsx bench/lib/load-cli.ts @spec.json
 *   echo '<spec JSON>' | node --import tsx bench/lib/load-cli.ts [-]
 *
 * Prints one line of LoadResult JSON on stdout, and `@phase measure` / `@phase stopped`
 * lines on stderr when the measured window opens and closes. Exit 0 on a finished run (even one
 * full of errors — they are in the result), 2 on a bad spec, 1 on anything else, 3 if
 * the run overstays its hard deadline.
 */
import { readFile } from 'node:fs/promises';
import { hardDeadlineMs, LoadSpecError, runLoad, validateSpec } from './load.ts';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function readSpecText(arg: string | undefined): Promise<string> {
  if (arg === undefined || arg === '-') return readStdin();
  if (arg.startsWith('@')) return readFile(arg.slice(1), 'utf8');
  return arg;
}

async function main(): Promise<void> {
  let spec;
  try {
    spec = validateSpec(JSON.parse(await readSpecText(process.argv[2])));
  } catch (err) {
    process.stderr.write(`load: bad spec: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
  setTimeout(() => {
    process.stderr.write('load: hard deadline exceeded\n');
    process.exit(3);
  }, hardDeadlineMs(spec)).unref();
  const result = await runLoad(spec, { onPhase: (phase) => process.stderr.write(`@phase ${phase}\n`) });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`load: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(err instanceof LoadSpecError ? 2 : 1);
});
