/**
 * What AzureBlobStore guarantees beyond the shared store contract (object-store.test.ts), against
 * a real Azurite: prefixes, content types, keys as data, hostile keys, the create-only write,
 * size limits before reading, paging, a missing container, every way of giving credentials, and
 * riding out an endpoint outage.
 */
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  StorageSharedKeyCredential,
  generateAccountSASQueryParameters,
} from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CascadeError } from '../../config/errors.js';
import { AzureBlobStore, makeAzureClient } from '../../pipeline/storage/azure-store.js';
import { isForbiddenPath } from '../../pipeline/storage/local-roots.js';
import { InvalidKeyError, type ObjectStore, ObjectNotFoundError, ObjectTooLargeError } from '../../pipeline/storage/object-store.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, type TestAzurite, startAzurite } from '../helpers/azurite.js';
import { Stores } from '../../pipeline/storage/stores.js';
import { startOutageProxy } from '../helpers/outage-proxy.js';

let azurite: TestAzurite;

beforeAll(async () => {
  azurite = await startAzurite({ containers: ['cascade'] });
});

afterAll(async () => {
  await azurite?.stop();
});

async function collect(store: ObjectStore, prefix?: string) {
  const out: { key: string; size: number }[] = [];
  for await (const o of store.list(prefix)) out.push(o);
  return out;
}

const storeAt = (prefix: string, o: { pageSize?: number } = {}) => new AzureBlobStore({ client: azurite.client, container: 'cascade', prefix, ...o });

describe('AzureBlobStore', () => {
  it('stores under its prefix and lists keys relative to it', async () => {
    const store = storeAt('pref/ix');
    expect(store.describe()).toBe('az://cascade/pref/ix/');
    await store.put('k/one.txt', '1');
    // A sibling with the same string prefix must not leak into the store.
    await azurite.client.getContainerClient('cascade').getBlockBlobClient('pref/ix2/other').upload('x', 1);
    const raw: string[] = [];
    for await (const b of azurite.client.getContainerClient('cascade').listBlobsFlat({ prefix: 'pref/' })) raw.push(b.name);
    expect(raw).toEqual(['pref/ix/k/one.txt', 'pref/ix2/other']);
    expect(await collect(store)).toEqual([{ key: 'k/one.txt', size: 1 }]);
  });

  it('writes each blob with the Content-Type of its key’s extension, by put, putIfAbsent and putStream alike', async () => {
    const store = storeAt('typed');
    const contentType = async (key: string) =>
      (await azurite.client.getContainerClient('cascade').getBlockBlobClient(`typed/${key}`).getProperties()).contentType;
    await store.put('summary.json', '{}');
    expect(await contentType('summary.json')).toBe('application/json');
    await store.put('confidence.png', 'x');
    expect(await contentType('confidence.png')).toBe('image/png');
    expect(await store.putIfAbsent('_cascade/run.json', '{}')).toBe(true);
    expect(await contentType('_cascade/run.json')).toBe('application/json');
    await store.putStream(
      'manifest.jsonl',
      (async function* () {
        yield '{"a":1}\n';
      })(),
    );
    expect(await contentType('manifest.jsonl')).toBe('application/x-ndjson');
  });

  it('treats keys as data: spaces, unicode, %, ?, #, quotes and dots round-trip and list back unchanged', async () => {
    const store = storeAt('data');
    const keys = ['a b/c+d.jpg', 'é/ü.png', '.hidden', '100%.jpg', 'a%2Fb.jpg', '%41.jpg', 'q?x#y.jpg', "it's.jpg", 'a..b/c.jpg', 'x/.../y.jpg'];
    for (const key of keys) {
      await store.put(key, key);
      expect((await store.get(key)).toString(), key).toBe(key);
    }
    expect((await collect(store)).map((o) => o.key).sort()).toEqual([...keys].sort());
  });

  it('refuses keys a URL would rewrite into another blob name, and writes nothing', async () => {
    const store = storeAt('hostile/root');
    const bad = ['../x', 'a/../../x', 'a/..', '..', './a', 'a/./b', '.', 'a\\..\\b', 'a\\b', 'a\0b', '', `${'k'.repeat(1020)}/x.jpg`];
    for (const key of bad) {
      await expect(store.put(key, 'x'), key).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.putIfAbsent(key, 'x'), key).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.putStream(key, (async function* () {})()), key).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.get(key), key).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.getStream(key), key).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(store.delete(key), key).rejects.toBeInstanceOf(InvalidKeyError);
    }
    await expect(store.get('../x')).rejects.toThrow(/Invalid object key "\.\.\/x": a '\.\.' segment is not allowed/);
    // Nothing reached the container: the would-be targets of the folded names are absent too.
    expect(await collect(storeAt('hostile'))).toEqual([]);
    expect(await collect(storeAt('x'))).toEqual([]);
    // A prefix (from an az:// URL or a caller) with such a segment is refused when the store is made.
    for (const prefix of ['a/../b', '..', 'a\\b', 'a\0b']) {
      let err: unknown;
      try {
        storeAt(prefix);
      } catch (e) {
        err = e;
      }
      expect(isForbiddenPath(err), prefix).toBe(true);
    }
    expect(() => new AzureBlobStore({ client: azurite.client, container: 'Bad_Name' })).toThrow(/Invalid Azure container name "Bad_Name"/);
  });

  it('putIfAbsent is create-only: of many racing writers exactly one wins, and the winner’s bytes stay', async () => {
    const store = storeAt('race');
    for (let round = 0; round < 3; round++) {
      const key = `_cascade/run-${round}.json`;
      const bodies = Array.from({ length: 12 }, (_, i) => JSON.stringify({ writer: i, pad: 'x'.repeat(5_000) }));
      const won = await Promise.all(bodies.map((b) => store.putIfAbsent(key, b)));
      expect(won.filter(Boolean)).toHaveLength(1);
      expect((await store.get(key)).toString()).toBe(bodies[won.indexOf(true)]);
      expect(await store.putIfAbsent(key, 'late')).toBe(false);
      expect((await store.get(key)).toString()).toBe(bodies[won.indexOf(true)]);
    }
  });

  it('refuses a blob over maxBytes from its announced length, before reading its body', async () => {
    const store = storeAt('limits');
    await store.put('big.bin', Buffer.alloc(3 * 1024 * 1024, 1));
    const err = await store.get('big.bin', { maxBytes: 1024 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ObjectTooLargeError);
    // The exact size, not "more than N bytes": it came from Content-Length, not from counting bytes read.
    expect((err as Error).message).toBe('Object too large: az://cascade/limits/big.bin is 3145728 bytes, over the 1024-byte limit');
    expect((await store.get('big.bin', { maxBytes: 3 * 1024 * 1024 })).length).toBe(3 * 1024 * 1024);
  });

  it('pages through listings with a small page size, in key byte order', async () => {
    const store = storeAt('paged', { pageSize: 3 });
    const keys = Array.from({ length: 10 }, (_, i) => `k${String(i).padStart(2, '0')}`);
    await Promise.all(keys.map((k) => store.put(k, k)));
    expect((await collect(store)).map((o) => o.key)).toEqual(keys);
  });

  it('reports a missing container as not found, naming the container', async () => {
    const store = new AzureBlobStore({ client: azurite.client, container: 'no-such-container', retryForMs: 0 });
    await expect(store.get('x')).rejects.toThrow(/^Object not found: az:\/\/no-such-container\/x \(container "no-such-container" does not exist\)$/);
    await expect(store.getStream('x')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(collect(store)).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(store.put('x', 'y')).rejects.toThrow(/^Failed to write az:\/\/no-such-container\/x: container "no-such-container" does not exist$/);
    await expect(store.delete('x')).rejects.toThrow(/container "no-such-container" does not exist/);
  });
});

describe('Azure credentials', () => {
  it('reads and writes with an account key or a SAS token from the config, and a connection string from the environment', async () => {
    const sas = generateAccountSASQueryParameters(
      {
        expiresOn: new Date(Date.now() + 3_600_000),
        permissions: AccountSASPermissions.parse('rwdlc'),
        resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
        services: AccountSASServices.parse('b').toString(),
      },
      new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
    ).toString();
    const clients = {
      key: makeAzureClient({ account: AZURITE_ACCOUNT, accountKey: AZURITE_KEY, endpoint: azurite.endpoint }, { env: {} }),
      sas: makeAzureClient({ account: AZURITE_ACCOUNT, sasToken: `?${sas}`, endpoint: azurite.endpoint }, { env: {} }),
      env: makeAzureClient({}, { env: azurite.env() }),
      envKey: makeAzureClient({ endpoint: undefined }, { env: { AZURE_STORAGE_ACCOUNT: AZURITE_ACCOUNT, AZURE_STORAGE_KEY: AZURITE_KEY } }),
    };
    for (const [name, client] of Object.entries(clients).slice(0, 3)) {
      const store = new AzureBlobStore({ client, container: 'cascade', prefix: `creds/${name}` });
      await store.put('x.txt', name);
      expect((await store.get('x.txt')).toString()).toBe(name);
    }
    // Without an endpoint the account's public one is used; only its URL is checked (no network here).
    expect(clients.envKey.url).toBe(`https://${AZURITE_ACCOUNT}.blob.core.windows.net/`);
    // A wrong key is refused by the service, not silently accepted.
    const wrong = makeAzureClient(
      { account: AZURITE_ACCOUNT, accountKey: Buffer.from('not the key').toString('base64'), endpoint: azurite.endpoint },
      { env: {} },
    );
    const err = await new AzureBlobStore({ client: wrong, container: 'cascade', retryForMs: 0 }).get('creds/key/x.txt').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^Failed to read az:\/\/cascade\/creds\/key\/x\.txt: /);
  });
});

describe('the az row of the store registry', () => {
  const AZURE_VARS = ['AZURE_STORAGE_CONNECTION_STRING', 'AZURE_STORAGE_ACCOUNT', 'AZURE_STORAGE_KEY', 'AZURE_STORAGE_SAS_TOKEN'];

  it('opens az:// locations with the config’s azure settings, and reads refs through them', async () => {
    const stores = new Stores({ azure: { account: AZURITE_ACCOUNT, accountKey: AZURITE_KEY, endpoint: azurite.endpoint } });
    const out = stores.open('az://cascade/registry/out');
    expect(out).toBeInstanceOf(AzureBlobStore);
    expect(out.describe()).toBe('az://cascade/registry/out/');
    await out.put('a.txt', 'via the registry');
    expect((await stores.read({ scheme: 'az', bucket: 'cascade', key: 'registry/out/a.txt' }, { maxBytes: 100 })).toString()).toBe('via the registry');
    await expect(stores.read({ scheme: 'az', bucket: 'cascade', key: 'registry/out/a.txt' }, { maxBytes: 3 })).rejects.toBeInstanceOf(ObjectTooLargeError);
    stores.close();
  });

  it('needs Azure credentials only when an az:// location is used, and then says which to set', () => {
    const saved = Object.fromEntries(AZURE_VARS.map((v) => [v, process.env[v]]));
    for (const v of AZURE_VARS) delete process.env[v];
    try {
      const stores = new Stores({});
      stores.open('/tmp/cascade-local-only');
      expect(() => stores.open('az://cascade/x')).toThrow(CascadeError);
      expect(() => stores.open('az://cascade/x')).toThrow(/^az:\/\/ needs Azure credentials: set AZURE_STORAGE_CONNECTION_STRING/);
    } finally {
      for (const [v, value] of Object.entries(saved)) if (value !== undefined) process.env[v] = value;
    }
  });
});

describe('AzureBlobStore under an outage', () => {
  it('rides out an endpoint that is down for a while, for writes, reads and listings', async () => {
    // The client talks to a proxy that refuses connections until it is up: its port is its own
    // from the start, so nothing else can take it while the client waits.
    const proxy = await startOutageProxy(azurite.port, { down: true });
    try {
      const client = azurite.makeClient({ endpoint: `http://${proxy.address}/${AZURITE_ACCOUNT}`, maxTries: 2 });
      const store = new AzureBlobStore({ client, container: 'cascade', prefix: 'outage', retryForMs: 30_000 });
      const write = store.put('a.txt', 'hello');
      await until(() => proxy.refused > 2);
      proxy.up();
      await write;
      proxy.down();
      const read = store.get('a.txt');
      const list = collect(store);
      const refused = proxy.refused;
      await until(() => proxy.refused > refused + 2);
      proxy.up();
      expect((await read).toString()).toBe('hello');
      expect(await list).toEqual([{ key: 'a.txt', size: 5 }]);
      // Without a retry budget the outage surfaces as one clear error naming the blob.
      proxy.down();
      const impatient = new AzureBlobStore({ client, container: 'cascade', prefix: 'outage', retryForMs: 0 });
      await expect(impatient.get('a.txt')).rejects.toThrow(/^Failed to read az:\/\/cascade\/outage\/a\.txt: /);
    } finally {
      await proxy.close();
    }
  });
});

/** Polls `check` every 20 ms until it holds. */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 20));
}
