/**
 * Issue 24, items 2 and 3, through the built CLI (`node bin/cascade.js`, real processes): a Redis
 * URL whose password holds unencoded @ : / # ? % spaces or unicode never shows any 3-character
 * fragment of it on stderr, whether Redis is unreachable (exit 1) or the URL does not parse
 * (exit 2); a malformed URL's error names where it came from (REDIS_URL or the config file's
 * `redisUrl`), not just "Invalid URL".
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withTempDir } from '../helpers/fixtures.js';
import { leakedFragments, randomPasswords } from '../helpers/random-passwords.js';

interface CliResult {
  code: number | null;
  stderr: string;
}

/** `cascade <args>` to its end with `env` added; never rejects. */
function cli(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/cascade.js', ...args], { env: { ...process.env, CASCADE_DEBUG: '', ...env }, timeout: 30_000 }, (err, _out, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }),
    );
  });
}

/** A loopback port that was bound and closed again: nothing listens there. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const work = withTempDir('redis-url');

describe('a Redis URL with a hostile password, through the CLI', () => {
  it('stderr holds no 3-character fragment of seeded random passwords, in redis://, rediss:// and user:pass@ forms', async () => {
    const port = await closedPort();
    // Every delimiter but '/', '#', '?' still parses as a URL: these reach the unreachable-Redis error.
    const parsing = [
      'Leak@99QX',
      'p@ss wörd:ж@漢Z',
      ...randomPasswords(2024, 40)
        .filter((p) => !/[/#?%]/.test(p))
        .slice(0, 3),
    ];
    const any = randomPasswords(7, 3);
    const runs = [...parsing, ...any].flatMap((pw) => [
      { pw, url: `redis://:${pw}@127.0.0.1:${port}` },
      { pw, url: `rediss://:${pw}@127.0.0.1:${port}/0` },
      { pw, url: `redis://app:${pw}@127.0.0.1:${port}` },
    ]);
    // Four at a time: the processes share a couple of cores with other tests.
    const results: Array<(typeof runs)[number] & CliResult> = [];
    for (let i = 0; i < runs.length; i += 4)
      results.push(
        ...(await Promise.all(
          runs.slice(i, i + 4).map(async (r) => ({ ...r, ...(await cli(['status'], { REDIS_URL: r.url, CASCADE_REDIS_TIMEOUT_MS: '300' })) })),
        )),
      );
    for (const r of results) {
      const what = `${JSON.stringify(r.pw)} → ${r.stderr}`;
      expect(leakedFragments(r.stderr, r.pw), what).toEqual([]);
      expect(r.stderr.trim().split('\n'), what).toHaveLength(1);
      expect([1, 2], what).toContain(r.code);
    }
    // The URLs that parse get as far as the connection, and say where they tried.
    for (const r of results.filter((x) => parsing.includes(x.pw))) {
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr, r.stderr).toMatch(new RegExp(`^cascade: Redis at rediss?://\\*\\*\\*@127\\.0\\.0\\.1:${port}(/0)? is unreachable`));
    }
  }, 120_000);

  it('a malformed REDIS_URL is named, exit 2, without its password', async () => {
    for (const url of ['redis://:Se/cr#etQX@127.0.0.1:1', 'redis://h:notaport', 'http://127.0.0.1:6379', 'redis-cluster://:SecretQX@nohostport']) {
      const r = await cli(['status'], { REDIS_URL: url });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr, r.stderr).toMatch(/^cascade: REDIS_URL is not a valid Redis URL \(.+\)\n$/);
      expect(r.stderr).not.toMatch(/Secret|cr#et|Se\//);
    }
    const r = await cli(['retry', 'some-run'], { REDIS_URL: 'redis://:Se/cr#etQX@127.0.0.1:1' });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^cascade: REDIS_URL is not a valid Redis URL/);
  });

  it('a malformed redisUrl in the config file is named with the file', async () => {
    const config = join(work.path, 'fleet.yaml');
    await writeFile(config, 'redisUrl: "redis://:Se/cr#etQX@127.0.0.1:1"\n');
    const r = await cli(['status', '--config', config], {});
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toBe(
      `cascade: redisUrl in ${config} is not a valid Redis URL (it does not parse: expected redis://host[:port][/db] with any credentials as user:password before the host and an @, rediss://… or redis-cluster://host:port[,host:port…]; percent-encode @ : / # ? % and spaces in the user name and password)\n`,
    );
  });
});
