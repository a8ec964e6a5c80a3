import { describe, expect, it } from 'vitest';
import { redactSecrets, redactValue } from '../../cli/redact.js';

const PW = 's3cr3t-Pa55';

describe('redactSecrets', () => {
  it.each([
    [`redis://default:${PW}@host:6379/0`, 'redis://default:***@host:6379/0'],
    [`redis-cluster://:${PW}@a:7000,b:7001`, 'redis-cluster://:***@a:7000,b:7001'],
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
