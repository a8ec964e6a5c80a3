/**
 * The one way tests get a port: the server binds port 0 itself and the port it got is read back,
 * so no other process can take it between choosing and binding (a redis-server, which cannot be
 * handed a socket, is started by cli/private-redis.ts, which retries a taken port and checks the
 * pid that answers).
 */
import type { AddressInfo, Server } from 'node:net';

/** Makes `server` listen on a free loopback port (or `port`) and resolves with the port it is bound to. */
export function listenOnFreePort(server: Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
