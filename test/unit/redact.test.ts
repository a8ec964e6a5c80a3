import { describe, expect, it } from 'vitest';
import { redactSecrets, redactUrl, redactValue } from '../../cli/redact.js';
import { hideRedisPassword, redisUrlProblem } from '../../queue/redis-connection.js';
import { leakedFragments, randomPasswords } from '../helpers/random-passwords.js';

const PW = 's3cr3t-Pa55';

describe('redactSecrets', () => {
  it.each([
    [`redis://default:${PW}@host:6379/0`, 'redis://***@host:6379/0'],
    [`redis-cluster://:${PW}@a:7000,b:7001`, 'redis-cluster://***@a:7000,b:7001'],
    [`connect redis://h:6379?password=${PW}&db=1`, 'connect redis://h:6379?password=***&db=1'],
    [`command: HELLO 3 AUTH default ${PW}`, 'command: HELLO 3 AUTH default ***'],
    [`AUTH ${PW}`, 'AUTH ***'],
    [`args: [ '3', 'AUTH', 'default', '${PW}' ]`, `args: [ '3', 'AUTH', 'default', '***' ]`],
    [`AWS_SECRET_ACCESS_KEY=${PW} key AKIAABCDEFGHIJKLMNOP`, 'AWS_SECRET_ACCESS_KEY=*** key AKIA***'],
  ])('%s', (input, expected) => {
    expect(redactSecrets(input)).toBe(expected);
  });
});

describe('redactValue', () => {
  it('masks ioredis AUTH/HELLO arguments, secret keys and URL passwords at any depth, errors included', () => {
    const err = Object.assign(new Error(`WRONGPASS for redis://u:${PW}@h`), {
      command: { name: 'hello', args: ['3', 'AUTH', 'default', PW] },
      previous: { name: 'auth', args: ['default', PW] },
    });
    const out = redactValue({ err, config: { password: PW, s3: { secretAccessKey: PW, region: 'x' } }, list: [`redis://:${PW}@h`] });
    expect(JSON.stringify(out)).not.toContain(PW);
    expect(out).toMatchObject({ err: { command: { args: ['3', 'AUTH', '***', '***'] }, previous: { args: ['***', '***'] } }, config: { s3: { region: 'x' } } });
  });
});

describe('Redis URLs with passwords that hold URL delimiters (issue 24)', () => {
  // Seeded: a failure names its password, and the same ones come back on every run.
  const passwords = randomPasswords(24, 300);

  it.each([
    ['redis://:Leak@99@127.0.0.1:1', 'redis://***@127.0.0.1:1'],
    ['rediss://:Leak@99@127.0.0.1:1', 'rediss://***@127.0.0.1:1'],
    ['redis://app:p@ss:w/rd#x?y@r:6379/2', 'redis://***@r:6379/2'],
    ['redis://secret@r:6379', 'redis://***@r:6379'],
    ['redis://r:6379/0?password=a@b&db=1', 'redis://r:6379/0?password=***&db=1'],
  ])('hides everything up to the last @ of %s', (url, hidden) => {
    expect(hideRedisPassword(url)).toBe(hidden);
    expect(redactSecrets(`Redis at ${url} is unreachable`)).toBe(`Redis at ${hidden} is unreachable`);
  });

  it('no 3-character fragment of 300 random passwords survives, in any scheme, user or none', () => {
    for (const pw of passwords) {
      const forms = [
        [`redis://:${pw}@127.0.0.1:1`, 'redis://***@127.0.0.1:1'],
        [`rediss://:${pw}@127.0.0.1:6380/0`, 'rediss://***@127.0.0.1:6380/0'],
        [`redis://app:${pw}@db.internal:6379`, 'redis://***@db.internal:6379'],
        [`rediss-cluster://app:${pw}@a:7000,b:7001`, 'rediss-cluster://***@a:7000,b:7001'],
      ];
      for (const [url, hidden] of forms) {
        const message = `Redis at ${url} is unreachable after 1 s: connect ECONNREFUSED 127.0.0.1:1`;
        expect({ pw, out: hideRedisPassword(url!) }).toEqual({ pw, out: hidden });
        expect({ pw, out: redactSecrets(message) }).toEqual({ pw, out: message.replace(url!, hidden!) });
        expect({ pw, leaked: leakedFragments(redactUrl(url!), pw) }).toEqual({ pw, leaked: [] });
        // Why a URL does not parse never quotes it.
        expect({ pw, leaked: leakedFragments(redisUrlProblem(url!) ?? '', pw) }).toEqual({ pw, leaked: [] });
      }
    }
  });
});

describe('Azure secrets (issue 25)', () => {
  const passwords = randomPasswords(25, 300);

  it.each([
    [
      `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=${PW};EndpointSuffix=core.windows.net`,
      'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;EndpointSuffix=core.windows.net',
    ],
    [
      `BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&sp=rl&sig=${PW}`,
      'BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=***',
    ],
    [
      `GET https://acct.blob.core.windows.net/c/a.jpg?sv=2022-11-02&sp=r&sig=${PW}&se=x failed`,
      'GET https://acct.blob.core.windows.net/c/a.jpg?sv=2022-11-02&sp=r&sig=***&se=x failed',
    ],
    [`azure: { account: 'acct', accountKey: '${PW} x', sasToken: "sv=1&sig=${PW}" }`, `azure: { account: 'acct', accountKey: ***, sasToken: *** }`],
    [`AZURE_STORAGE_KEY=${PW} AZURE_STORAGE_SAS_TOKEN=${PW}`, 'AZURE_STORAGE_KEY=*** AZURE_STORAGE_SAS_TOKEN=***'],
  ])('%s', (input, expected) => {
    expect(redactSecrets(input)).toBe(expected);
  });

  it('no 3-character fragment of 300 random account keys or SAS signatures survives, in text or in logged objects', () => {
    for (const pw of passwords) {
      const connectionString = `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=${pw};BlobEndpoint=https://acct.blob.core.windows.net/;`;
      const sasConnection = `BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&srt=sco&sp=rl&sig=${pw}`;
      const sasUrl = `https://acct.blob.core.windows.net/c/a.jpg?sv=2022-11-02&sp=r&sig=${encodeURIComponent(pw)}`;
      const texts = [
        `cannot connect with ${connectionString} now`,
        `cannot connect with ${sasConnection}`,
        `Failed to read ${sasUrl}: 403`,
        `AZURE_STORAGE_CONNECTION_STRING="${connectionString}"`,
        `accountKey: "${pw}", sasToken: '${pw}'`,
      ];
      for (const text of texts) expect({ pw, leaked: leakedFragments(redactSecrets(text), pw) }).toEqual({ pw, leaked: [] });
      const logged = redactValue({
        azure: { account: 'acct', accountKey: pw, sasToken: pw },
        env: { AZURE_STORAGE_CONNECTION_STRING: connectionString, AZURE_STORAGE_KEY: pw, AZURE_STORAGE_SAS_TOKEN: pw },
        err: Object.assign(new Error(`Failed to read ${sasUrl}`), { request: { url: sasUrl } }),
      });
      expect({ pw, leaked: leakedFragments(JSON.stringify(logged), pw) }).toEqual({ pw, leaked: [] });
      // What is not secret stays readable.
      expect(JSON.stringify(logged)).toContain('acct');
    }
  });
});
