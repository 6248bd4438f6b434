import { createServer, type Server } from 'node:http';
import type { Metrics } from '../infra/metrics.ts';
import type { JobRunner } from './runner.ts';

/**
 * `pulse worker`'s small HTTP server: /healthz (the process is alive), /readyz (the
 * worker is consuming: 503 when it stopped, or when jobs wait and none finishes — see
 * JobRunner.readiness) and /metrics.
 */
export async function startWorkerHttp(runner: JobRunner, metrics: Metrics, host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') return send(405, 'application/json', '{"status":"method not allowed"}');
    if (path === '/healthz') return send(200, 'application/json', '{"status":"ok"}');
    if (path === '/readyz') {
      return void runner.readiness().then((r) =>
        send(r.ok ? 200 : 503, 'application/json', JSON.stringify(r.ok ? { status: 'ok' } : { status: 'unavailable', detail: r.detail })),
      );
    }
    if (path === '/metrics') {
      return void metrics.registry.metrics().then(
        (text) => send(200, metrics.registry.contentType, text),
        () => send(500, 'text/plain', 'metrics failed\n'),
      );
    }
    send(404, 'application/json', '{"status":"not found"}');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
