/**
 * Azurite, Microsoft's Azure Storage emulator, as a child process serving Blob on a loopback
 * port it picks itself (port 0: the port is read back from its own log line, so nothing can take
 * it in between), with its own temp directory, and a client built the way production builds one
 * (makeAzureClient from a connection string).
 */
import type { BlobServiceClient } from '@azure/storage-blob';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AzureClientOptions, makeAzureClient } from '../../pipeline/storage/azure-store.js';

/** Azurite's one built-in account and its published key (docs: "Azurite, connection strings"). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

const BIN = fileURLToPath(new URL('../../node_modules/azurite/dist/src/blob/main.js', import.meta.url));

export interface TestAzurite {
  port: number;
  /** The account's blob endpoint, `http://127.0.0.1:<port>/devstoreaccount1`. */
  endpoint: string;
  /** A connection string for this Azurite, or for `endpoint` (a proxy in front of it). */
  connectionString(endpoint?: string): string;
  /** The environment a child process (or makeAzureClient) reads these credentials from. */
  env(endpoint?: string): { AZURE_STORAGE_CONNECTION_STRING: string };
  client: BlobServiceClient;
  /** Another client on this Azurite (or on `endpoint`), e.g. with a different retry policy. */
  makeClient(opts?: AzureClientOptions & { endpoint?: string }): BlobServiceClient;
  createContainer(name: string): Promise<void>;
  stop(): Promise<void>;
}

/** Starts azurite-blob on 127.0.0.1 in a fresh temp dir; `containers` exist when it resolves. */
export async function startAzurite(opts: { containers?: string[] } = {}): Promise<TestAzurite> {
  const location = await fs.mkdtemp(path.join(os.tmpdir(), 'cascade-azurite-'));
  const child = spawn(
    process.execPath,
    [BIN, '--blobHost', '127.0.0.1', '--blobPort', '0', '--location', location, '--silent', '--skipApiVersionCheck', '--loose'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await fs.rm(location, { recursive: true, force: true });
  };
  let port: number;
  try {
    port = await listeningPort(child);
  } catch (err) {
    await stop();
    throw err;
  }
  const endpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  const connectionString = (at = endpoint) => `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${at};`;
  const env = (at?: string) => ({ AZURE_STORAGE_CONNECTION_STRING: connectionString(at) });
  const makeClient = (o: AzureClientOptions & { endpoint?: string } = {}) => makeAzureClient({}, { ...o, env: env(o.endpoint) });
  const client = makeClient();
  try {
    for (const name of opts.containers ?? []) await client.createContainer(name);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    port,
    endpoint,
    connectionString,
    env,
    client,
    makeClient,
    createContainer: async (name) => {
      await client.createContainer(name);
    },
    stop,
  };
}

/** Resolves with the port from Azurite's "listens on http://127.0.0.1:<port>" line; rejects if it exits or takes over 30 s. */
function listeningPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    const done = (f: () => void) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      // Keep draining its output so a chatty Azurite never blocks on a full pipe.
      child.stdout?.resume();
      child.stderr?.resume();
      f();
    };
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = /listens on https?:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) done(() => resolve(Number(m[1])));
    };
    const onExit = (code: number | null) => done(() => reject(new Error(`azurite-blob exited (${code}) before listening: ${out.trim()}`)));
    const timer = setTimeout(() => done(() => reject(new Error(`azurite-blob did not listen within 30 s: ${out.trim()}`))), 30_000);
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.once('exit', onExit);
  });
}
