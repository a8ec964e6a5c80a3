/**
 * A TCP proxy on a port of its own that can play an outage of whatever is behind it (s3rver, a
 * redis-server): while down it cuts every open connection and resets each new one at once, and
 * it counts those refusals, so a fault test can show that clients really tried during the fault.
 * It keeps its port for its whole life, so what is behind it can move (a restarted redis-server
 * on another port) with no free-port race.
 */
import net from 'node:net';
import { listenOnFreePort } from './free-port.js';

export interface OutageProxy {
  port: number;
  /** `host:port` of the proxy, for URLs. */
  address: string;
  /** Connections refused so far: reset while down, or cut because the target did not answer. */
  readonly refused: number;
  /** Cut every open connection and refuse new ones until up(). */
  down(): void;
  /** Forward new connections again (to `targetPort`, if given, from now on). */
  up(targetPort?: number): void;
  close(): Promise<void>;
}

/** Starts a proxy to 127.0.0.1:`targetPort`, up unless `down` is set. */
export async function startOutageProxy(targetPort: number, o: { down?: boolean } = {}): Promise<OutageProxy> {
  let target = targetPort;
  let isDown = o.down ?? false;
  let refused = 0;
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  const server = net.createServer((client) => {
    if (isDown) {
      refused++;
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(target, '127.0.0.1');
    track(client);
    track(upstream);
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
    });
    const cut = () => {
      if (!connected) refused++;
      connected = true; // count a connection once
      client.destroy();
      upstream.destroy();
    };
    client.on('error', cut);
    upstream.on('error', cut);
    client.pipe(upstream).pipe(client);
  });
  const port = await listenOnFreePort(server);
  return {
    port,
    address: `127.0.0.1:${port}`,
    get refused() {
      return refused;
    },
    down: () => {
      isDown = true;
      for (const s of sockets) s.destroy();
    },
    up: (targetPort) => {
      if (targetPort !== undefined) target = targetPort;
      isDown = false;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
