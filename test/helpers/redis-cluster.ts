/**
 * A throwaway 3-master Redis Cluster on loopback: three `redis-server --cluster-enabled yes`
 * processes started by cli/private-redis.ts, joined with `redis-cli --cluster create`, ready
 * once every node reports `cluster_state:ok`.
 */
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { type PrivateRedis, startPrivateRedis } from '../../cli/private-redis.js';

const run = promisify(execFile);

export interface TestRedisCluster {
  ports: number[];
  /** `redis-cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`. */
  url: string;
  stop(): Promise<void>;
}

async function cli(port: number, ...args: string[]): Promise<string> {
  return (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 30_000 })).stdout;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`Redis Cluster: timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Starts 3 masters (no replicas, no persistence) and creates the cluster over them; with `password`, every node requires it. */
export async function startRedisCluster(opts: { password?: string } = {}): Promise<TestRedisCluster> {
  const { password } = opts;
  // Each node is started the way `cascade run` starts its private server (cli/private-redis.ts):
  // on a port it retries if another process takes it first, ready only once our pid answers.
  const nodes: PrivateRedis[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    for (let i = 0; i < 3; i++) nodes.push(await startPrivateRedis({ extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'] }));
    const ports = nodes.map((n) => n.port);
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
    for (const port of ports) await waitFor(`cluster_state:ok on ${port}`, async () => (await cli(port, 'cluster', 'info')).includes('cluster_state:ok'));
    // The password goes on once the cluster is up: the launcher's readiness probe and
    // `--cluster create` then need none. The cluster bus between nodes does not use it.
    if (password !== undefined) for (const port of ports) await cli(port, 'config', 'set', 'requirepass', password);
    return { ports, url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
