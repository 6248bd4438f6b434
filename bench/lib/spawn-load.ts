/** Runs bench/lib/load-cli.ts in a child process and returns its LoadResult. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { generatorModuleUrl, hardDeadlineMs, validateSpec, type LoadSpec } from './load.ts';
import type { LoadResult } from './result.ts';

const CLI = fileURLToPath(new URL('./load-cli.ts', import.meta.url));
const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface SpawnLoadOptions {
  /** Extra node flags, e.g. ['--max-semi-space-size=32']. */
  nodeArgs?: string[];
  /** Relative generator module paths resolve from here; default process.cwd(). */
  baseDir?: string;
  /** Called with the child's pid once spawned (to sample its CPU, pin it, ...). */
  onSpawn?: (pid: number) => void;
  /** Called when the child's measured window opens and closes (start/stop server sampling here). */
  onPhase?: (phase: 'measure' | 'stopped') => void;
}

const PHASE_LINE = /^@phase (measure|stopped)$/;

export function spawnLoad(specInput: LoadSpec, options: SpawnLoadOptions = {}): Promise<LoadResult> {
  const spec = validateSpec(specInput);
  // The child runs from the project root; pin the generator module to an absolute URL.
  const requests = { ...spec.requests, module: generatorModuleUrl(spec.requests.module, options.baseDir) };
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', CLI, '-'], {
    cwd: PROJECT_ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (child.pid !== undefined) options.onSpawn?.(child.pid);
  child.stdin.on('error', () => {}); // a child that dies at once reports through 'close'
  child.stdin.end(JSON.stringify({ ...spec, requests }));
  let out = '';
  let err = '';
  let partial = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      const m = PHASE_LINE.exec(line);
      if (m) options.onPhase?.(m[1] as 'measure' | 'stopped');
      else err += `${line}\n`;
    }
  });
  return new Promise((resolve, reject) => {
    // The CLI enforces its own deadline; this one covers a child that cannot even start.
    const killer = setTimeout(() => child.kill('SIGKILL'), hardDeadlineMs(spec) + 15_000);
    child.on('error', (e) => {
      clearTimeout(killer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      const line = out.trim().split('\n').pop() ?? '';
      if (code === 0 && line.startsWith('{')) {
        try {
          resolve(JSON.parse(line) as LoadResult);
          return;
        } catch {
          /* fall through */
        }
      }
      reject(new Error(`load generator exited ${code ?? signal}: ${(err + partial).trim() || out.trim()}`));
    });
  });
}
