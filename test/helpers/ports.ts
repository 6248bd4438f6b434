import { createServer, type AddressInfo } from 'node:net';

/**
 * A port nothing listens on now, chosen by the OS. A random number instead collided now
 * and then with the outgoing connections of a full test run (Linux gives those ports from
 * 32768 up): the process under test then could not listen and exited.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
