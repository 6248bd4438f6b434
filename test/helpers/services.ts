import { connect } from 'node:net';

/**
 * Whether an external service a test file needs (MQTT broker, Redis…) answers on
 * host:port. Returns undefined when it does, else a skip reason for
 * `describe(name, { skip: await requireService(…) })`. In CI (CI=true) an unreachable
 * service is a failure, not a skip: it throws.
 */
export async function requireService(name: string, host: string, port: number, timeoutMs = 2_000): Promise<string | undefined> {
  const error = await new Promise<string | null>((resolve) => {
    const socket = connect({ host, port });
    const done = (err: string | null) => {
      socket.destroy();
      resolve(err);
    };
    socket.setTimeout(timeoutMs, () => done(`no answer within ${timeoutMs} ms`));
    socket.once('connect', () => done(null));
    socket.once('error', (err) => done(err.message));
  });
  if (error === null) return undefined;
  const reason = `${name} is not reachable at ${host}:${port} (${error})`;
  if (process.env.CI === 'true') throw new Error(`${reason}; CI must run it`);
  return `${reason}; start it to run these tests`;
}
