/**
 * docker/healthcheck.mjs, the images' HEALTHCHECK and compose's healthcheck (no curl in the
 * images): run as a real process against a real HTTP server, as Docker runs it.
 */
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const SCRIPT = join(resolve(import.meta.dirname, '..', '..'), 'docker', 'healthcheck.mjs');

/** The exit code of `node docker/healthcheck.mjs <url>`. */
async function check(url: string): Promise<number> {
  try {
    await promisify(execFile)(process.execPath, [SCRIPT, url], { timeout: 30_000 });
    return 0;
  } catch (err) {
    return (err as { code: number }).code;
  }
}

describe('docker/healthcheck.mjs', () => {
  it('exits 0 on a 2xx answer, 1 on 503 and when nothing listens', async () => {
    const server = createServer((req, res) => res.writeHead(req.url === '/readyz' ? 503 : 200).end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      expect(await check(`http://127.0.0.1:${port}/healthz`)).toBe(0);
      expect(await check(`http://127.0.0.1:${port}/readyz`)).toBe(1);
    } finally {
      await new Promise((r) => server.close(r));
    }
    expect(await check(`http://127.0.0.1:${port}/healthz`)).toBe(1);
  });
});
