/** Listing S3 sources on s3rver: pagination, lazy client, key-list files on S3, missing buckets and prefixes. */
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { compareKeys } from '../../pipeline/storage/object-store.js';
import { s3Scheme } from '../../pipeline/storage/s3-store.js';
import { type StoreSettings, Stores } from '../../pipeline/storage/stores.js';
import { SourceNotFoundError, listSource, listSourceFrom } from '../../producers/list-source.js';
import { type ListingCursor, parseCursor } from '../../producers/listing-cursor.js';
import { type TestS3, startS3 } from '../helpers/s3.js';

const EXT = ['.jpg', '.jpeg', '.png'];
// These tests count the requests of the plain listing; the split one has its own (split-listing-s3.test.ts).
const SEQUENTIAL = { concurrency: 1, splits: 1, pagesAhead: 1 };
let s3: TestS3;

/** The refs of `s3://<bucket>/many` after `cursor`, 25 keys a page. */
async function* refsAfter(cursor: ListingCursor | null): AsyncGenerator<string> {
  for await (const item of listSourceFrom('s3://list-test/many', { extensions: EXT, stores: s3.stores, pageSize: 25, split: SEQUENTIAL }, cursor))
    yield item.ref;
}

async function all(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const x of it) out.push(x);
  return out;
}

beforeAll(async () => {
  s3 = await startS3();
});

afterAll(async () => {
  await s3?.stop();
});

describe('S3 sources', () => {
  const bucket = 'list-test';
  // s3rver takes several ms per upload, so pagination is exercised with small pages rather than
  // S3's 1000-key pages; the code path (continuation tokens) is the same.
  const many = Array.from({ length: 240 }, (_, i) => `many/img${String(i).padStart(5, '0')}.jpg`);

  beforeAll(async () => {
    await s3.createBucket(bucket);
    const extra = ['many/readme.txt', 'many/IMG99999.JPEG', 'many/folder/', 'many2/not-me.jpg', 'lists/keys.txt', 'lists/sub/a.jpg', 'lists/input.manifest'];
    const bodies: Record<string, string> = {
      'lists/keys.txt': '# list on S3\nsub/a.jpg\ns3://other-bucket/x.jpg\n/local/abs.jpg\n',
      'lists/input.manifest': '{"source-ref": "s3://other-bucket/x.jpg"}\n{"source-ref": "sub/a.jpg", "label": 3}\n{"source": "text"}\n',
    };
    const keys = [...many, ...extra];
    for (let i = 0; i < keys.length; i += 32) {
      await Promise.all(
        keys.slice(i, i + 32).map((Key) => {
          const Body = Buffer.from(bodies[Key] ?? Key);
          return s3.client.send(new PutObjectCommand({ Bucket: bucket, Key, Body }));
        }),
      );
    }
  });

  it('resumes a prefix after the key its cursor holds (StartAfter), mid-page and on a page boundary, with no request for the keys before it', async () => {
    const listed: Array<{ ref: string; cursor: ListingCursor }> = [];
    for await (const item of listSourceFrom(`s3://${bucket}/many`, { extensions: EXT, stores: s3.stores, pageSize: 25, split: SEQUENTIAL }, null))
      listed.push(item);
    expect(listed).toHaveLength(241);
    for (const i of [0, 24, 25, 100, 239, 240]) {
      const send = vi.spyOn(s3.client, 'send');
      try {
        const cursor = parseCursor(JSON.stringify(listed[i]!.cursor));
        const rest = await all(refsAfter(cursor));
        expect(rest, `after ${i}`).toEqual(listed.slice(i + 1).map((x) => x.ref));
        const first = send.mock.calls.find(([cmd]) => cmd instanceof ListObjectsV2Command)?.[0] as ListObjectsV2Command;
        expect(first.input.StartAfter).toBe((cursor as { after: string }).after);
        // Only the pages from the cursor on: 243 objects listed 25 a page, from position i + 1.
        const calls = send.mock.calls.filter(([cmd]) => cmd instanceof ListObjectsV2Command).length;
        expect(calls).toBe(Math.max(1, Math.ceil((243 - (i + 1)) / 25)));
      } finally {
        send.mockRestore();
      }
    }
  });

  it('lists more than one page of objects, filtered, in S3 order', async () => {
    const send = vi.spyOn(s3.client, 'send');
    try {
      const refs = await all(listSource(`s3://${bucket}/many`, { extensions: EXT, stores: s3.stores, pageSize: 25, split: SEQUENTIAL }));
      const expected = [...many, 'many/IMG99999.JPEG'].sort(compareKeys).map((k) => `s3://${bucket}/${k}`);
      expect(refs).toEqual(expected);
      const listCalls = send.mock.calls.filter(([cmd]) => cmd instanceof ListObjectsV2Command);
      // 243 objects under many/ (the filter runs client-side) → 10 pages.
      expect(listCalls.length).toBe(10);
    } finally {
      send.mockRestore();
    }
  });

  it('lists with the server default page size and connects the S3 row lazily, once per Stores', async () => {
    let built = 0;
    const counting = { ...s3Scheme, connect: (settings: StoreSettings) => (built++, s3Scheme.connect(settings, s3.client)) };
    const stores = new Stores({}, { schemes: [counting] });
    expect(built).toBe(0);
    const refs = await all(listSource(`s3://${bucket}/many/`, { extensions: ['.jpg'], stores }));
    expect(refs).toEqual(many.map((k) => `s3://${bucket}/${k}`));
    await all(listSource(`s3://${bucket}/lists/keys.txt`, { extensions: EXT, stores }));
    expect(built).toBe(1);
  });

  it('reads a key-list file stored on S3, resolving relative lines next to it', async () => {
    const refs = await all(listSource(`s3://${bucket}/lists/keys.txt`, { extensions: EXT, stores: s3.stores }));
    expect(refs).toEqual([`s3://${bucket}/lists/sub/a.jpg`, 's3://other-bucket/x.jpg', '/local/abs.jpg']);
  });

  it('reads a Ground Truth manifest stored on S3; its bad line is an error naming the line', async () => {
    const refs: string[] = [];
    const read = async () => {
      for await (const ref of listSource(`s3://${bucket}/lists/input.manifest`, { extensions: EXT, stores: s3.stores })) refs.push(ref);
    };
    await expect(read()).rejects.toThrow(`s3://${bucket}/lists/input.manifest:3: a text object ("source"), not an image ("source-ref")`);
    expect(refs).toEqual(['s3://other-bucket/x.jpg', `s3://${bucket}/lists/sub/a.jpg`]);
  });

  it('names missing buckets, empty prefixes and missing list files', async () => {
    await expect(all(listSource('s3://no-such-bucket/x', { extensions: EXT, stores: s3.stores }))).rejects.toThrow(
      'Source not found: s3://no-such-bucket/x (bucket "no-such-bucket" does not exist)',
    );
    const err = await all(listSource(`s3://${bucket}/manyy`, { extensions: EXT, stores: s3.stores })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SourceNotFoundError);
    expect((err as Error).message).toBe(`Source not found: s3://${bucket}/manyy (no objects under s3://${bucket}/manyy/)`);
    await expect(all(listSource(`s3://${bucket}/lists/missing.txt`, { extensions: EXT, stores: s3.stores }))).rejects.toThrow(
      `Source not found: s3://${bucket}/lists/missing.txt`,
    );
  });

  it('needs an S3 client for S3 sources', async () => {
    await expect(all(listSource(`s3://${bucket}/many`, { extensions: EXT }))).rejects.toThrow(/no S3 client was configured/);
  });
});
