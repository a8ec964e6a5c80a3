/** The az:// URL rules and where Azure credentials come from (the store itself runs against Azurite in test/integration). */
import { describe, expect, it } from 'vitest';
import { CascadeError } from '../../config/errors.js';
import { AzureSettings } from '../../config/schema.js';
import { azureCredentials, formatAzUrl, isTransientAzureError, makeAzureClient } from '../../pipeline/storage/azure-store.js';
import { isForbiddenPath } from '../../pipeline/storage/local-roots.js';
import { parseLocation, parseRef } from '../../pipeline/storage/location.js';
import { ObjectNotFoundError } from '../../pipeline/storage/object-store.js';
import { leakedFragments, randomPasswords } from '../helpers/random-passwords.js';

describe('az:// URLs (the registry row)', () => {
  it('splits container and raw key, as a location and as a ref', () => {
    expect(parseRef('az://photos')).toEqual({ kind: 'remote', scheme: 'az', bucket: 'photos', key: '' });
    expect(parseRef('AZ://my-container-1/a b/c%2F.jpg')).toEqual({ kind: 'remote', scheme: 'az', bucket: 'my-container-1', key: 'a b/c%2F.jpg' });
    expect(parseRef('az://abc/x/..y/.z')).toMatchObject({ key: 'x/..y/.z' });
    expect(parseLocation('az://photos/2026')).toEqual({ kind: 'remote', scheme: 'az', bucket: 'photos', prefix: '2026/' });
    expect(formatAzUrl('photos', 'a/b.jpg')).toBe('az://photos/a/b.jpg');
  });

  it.each([
    ['az:///key', /Malformed Azure Blob URL "az:\/\/\/key": the container name is empty/],
    ['az://ab/x', /invalid container name "ab" \(3-63 lower-case letters, digits and single hyphens/],
    [`az://${'a'.repeat(64)}/x`, /invalid container name/],
    ['az://Photos/x', /invalid container name "Photos"/],
    ['az://my_photos/x', /invalid container name/],
    ['az://my--photos/x', /invalid container name/],
    ['az://-photos/x', /invalid container name/],
    ['az://photos-/x', /invalid container name/],
    ['az://photos/a\0b', /the key contains a NUL character/],
  ])('refuses %j', (url, message) => {
    expect(() => parseRef(url)).toThrow(CascadeError);
    expect(() => parseRef(url)).toThrow(message);
  });

  it.each(['az://photos/../other', 'az://photos/a/./b', 'az://photos/..', 'az://photos/a\\b.jpg', 'az://photos/a\\..\\b'])(
    'refuses %j as forbidden: the URL would name another blob',
    (url) => {
      let err: unknown;
      try {
        parseRef(url);
      } catch (e) {
        err = e;
      }
      expect(isForbiddenPath(err)).toBe(true);
      expect((err as Error).message).toMatch(/is a malformed Azure Blob URL: the key has a/);
    },
  );
});

describe('Azure credentials', () => {
  const CS = 'DefaultEndpointsProtocol=https;AccountName=envacct;AccountKey=a2V5;EndpointSuffix=core.windows.net';

  it('prefers an account in the config, then the connection string, then the account variables', () => {
    expect(azureCredentials({ account: 'cfgacct', accountKey: 'k' }, { AZURE_STORAGE_CONNECTION_STRING: CS })).toEqual({
      kind: 'account-key',
      account: 'cfgacct',
      accountKey: 'k',
      endpoint: 'https://cfgacct.blob.core.windows.net',
    });
    expect(azureCredentials({}, { AZURE_STORAGE_CONNECTION_STRING: CS, AZURE_STORAGE_ACCOUNT: 'other', AZURE_STORAGE_KEY: 'k' })).toEqual({
      kind: 'connection-string',
      connectionString: CS,
    });
    expect(azureCredentials({}, { AZURE_STORAGE_ACCOUNT: 'envacct', AZURE_STORAGE_SAS_TOKEN: '?sv=1&sig=s' })).toEqual({
      kind: 'sas',
      account: 'envacct',
      sasToken: 'sv=1&sig=s',
      endpoint: 'https://envacct.blob.core.windows.net',
    });
    // The config's account takes its secret from the environment when the config holds none.
    expect(azureCredentials({ account: 'cfgacct', endpoint: 'http://127.0.0.1:10000/cfgacct/' }, { AZURE_STORAGE_KEY: 'k' })).toMatchObject({
      kind: 'account-key',
      endpoint: 'http://127.0.0.1:10000/cfgacct',
    });
    // A SAS token in the config is not overridden by a key in the environment.
    expect(azureCredentials({ account: 'cfgacct', sasToken: 'sig=s' }, { AZURE_STORAGE_KEY: 'k' })).toMatchObject({ kind: 'sas', sasToken: 'sig=s' });
  });

  it('says what to set when there are none', () => {
    expect(() => azureCredentials({}, {})).toThrow(/^az:\/\/ needs Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with/);
    expect(() => azureCredentials({ account: 'acct' }, {})).toThrow(/\(account "acct" has no key or SAS token\)$/);
    expect(() => azureCredentials({}, { AZURE_STORAGE_ACCOUNT: 'acct' })).toThrow(CascadeError);
  });

  it('never quotes a malformed connection string, whose key is a secret', () => {
    for (const pw of randomPasswords(2501, 50)) {
      const err = (() => {
        try {
          makeAzureClient({}, { env: { AZURE_STORAGE_CONNECTION_STRING: `AccountKey=${pw};NoAccountName=x` } });
        } catch (e) {
          return e as Error;
        }
      })();
      expect(err).toBeInstanceOf(CascadeError);
      expect(err?.message).toMatch(/^AZURE_STORAGE_CONNECTION_STRING is not a valid Azure Storage connection string/);
      expect({ pw, leaked: leakedFragments(err?.message ?? '', pw) }).toEqual({ pw, leaked: [] });
    }
  });

  it('validates the config settings', () => {
    expect(AzureSettings.safeParse({ account: 'acct', accountKey: 'k' }).success).toBe(true);
    expect(AzureSettings.safeParse({ account: 'acct', accountKey: 'k', sasToken: 's' }).error?.issues[0]?.message).toBe('set accountKey or sasToken, not both');
    expect(AzureSettings.safeParse({ accountKey: 'k' }).error?.issues[0]?.message).toBe('accountKey, sasToken and endpoint need an account');
    expect(AzureSettings.safeParse({ account: 'Acct_1' }).success).toBe(false);
    expect(AzureSettings.safeParse({ account: 'acct', endpoint: 'not a url' }).success).toBe(false);
    expect(AzureSettings.safeParse({ account: 'acct', key: 'k' }).success).toBe(false);
  });
});

describe('transient Azure failures', () => {
  it('retries 5xx, 429 and requests that got no answer; not 4xx answers or typed store errors', () => {
    const rest = (fields: object) => Object.assign(new Error('azure'), { name: 'RestError' }, fields);
    expect(isTransientAzureError(rest({ statusCode: 503, code: 'ServerBusy' }))).toBe(true);
    expect(isTransientAzureError(rest({ statusCode: 500 }))).toBe(true);
    expect(isTransientAzureError(rest({ statusCode: 429 }))).toBe(true);
    expect(isTransientAzureError(rest({ code: 'ECONNREFUSED' }))).toBe(true);
    expect(isTransientAzureError(rest({ code: 'REQUEST_SEND_ERROR' }))).toBe(true);
    expect(isTransientAzureError(Object.assign(new Error('timeout'), { name: 'TimeoutError' }))).toBe(true);
    expect(isTransientAzureError(new Error('Failed to read az://c/k', { cause: rest({ code: 'ECONNRESET' }) }))).toBe(true);
    expect(isTransientAzureError(rest({ statusCode: 403, code: 'AuthorizationFailure' }))).toBe(false);
    expect(isTransientAzureError(rest({ statusCode: 409, code: 'BlobAlreadyExists' }))).toBe(false);
    expect(isTransientAzureError(rest({ statusCode: 404, code: 'BlobNotFound' }))).toBe(false);
    expect(isTransientAzureError(new ObjectNotFoundError('az://c/k', undefined, { cause: rest({ code: 'ECONNRESET' }) }))).toBe(false);
    expect(isTransientAzureError(new Error('bad key'))).toBe(false);
  });
});
