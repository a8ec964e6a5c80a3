/** The manifest invariant checker on synthetic manifests: missing, duplicate, unknown and invalid rows, bounded examples. */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ManifestRow } from '../../pipeline/results/manifest.js';
import { readManifestRows } from '../../pipeline/results/manifest-reader.js';
import { ManifestChecker, formatVerifyReport, readManifestLines, verifyManifest } from '../../pipeline/results/verify-manifest.js';
import { Stores } from '../../pipeline/storage/stores.js';

function row(key: string, over: Partial<ManifestRow> = {}): string {
  return JSON.stringify({ key, label: 0, labelName: 'red', confidence: 0.9, stage: 'little', top5: [{ label: 0, name: 'red', p: 0.9 }], error: null, ...over });
}

describe('verifyManifest (synthetic manifests)', () => {
  const source = ['/d/a.jpg', '/d/b.jpg', '/d/c.jpg'];

  it('a clean manifest passes, error rows included', async () => {
    const lines = [
      row('/d/a.jpg'),
      row('/d/b.jpg', { label: null, labelName: null, confidence: null, stage: null, top5: [], error: { kind: 'decode', message: 'bad' } }),
      row('/d/c.jpg'),
      '',
    ];
    const r = await verifyManifest(source, readManifestRows(lines));
    expect(r).toMatchObject({ ok: true, sourceKeys: 3, manifestRows: 3, errorRows: 1, counts: { missing: 0, duplicate: 0, unknown: 0, invalid: 0 } });
  });

  it('reports missing, duplicate and unknown keys', async () => {
    const r = await verifyManifest(source, readManifestRows([row('/d/a.jpg'), row('/d/a.jpg'), row('/d/z.jpg'), row('/d/z.jpg')]));
    expect(r.ok).toBe(false);
    expect(r.counts).toEqual({ missing: 2, duplicate: 2, unknown: 1, invalid: 0 });
    expect(r.missing).toEqual(['/d/b.jpg', '/d/c.jpg']);
    expect(r.duplicate).toEqual([
      { key: '/d/a.jpg', rows: 2 },
      { key: '/d/z.jpg', rows: 2 },
    ]);
    expect(r.unknown).toEqual(['/d/z.jpg']);
    expect(formatVerifyReport(r)).toMatch(/^FAILED: 3 inputs, 4 manifest rows .*missing 2, duplicate 2, unknown 1, invalid 0\n {2}missing: {3}\/d\/b\.jpg/);
  });

  it('reports rows that fail the schema with their line, and still counts their key', async () => {
    const r = await verifyManifest(
      source,
      readManifestRows([
        row('/d/a.jpg'),
        '{not json',
        row('/d/b.jpg', { error: { kind: 'meteor', message: 'x' } as never }),
        row('/d/c.jpg', { confidence: 'high' as never }),
      ]),
    );
    expect(r.counts).toEqual({ missing: 0, duplicate: 0, unknown: 0, invalid: 3 });
    expect(r.invalid.map((i) => [i.line, i.key])).toEqual([
      [2, null],
      [3, '/d/b.jpg'],
      [4, '/d/c.jpg'],
    ]);
    expect(r.invalid[0]!.message).toMatch(/not JSON/);
    expect(r.invalid[1]!.message).toMatch(/^error\.kind: /);
    expect(r.invalid[2]!.message).toMatch(/^confidence: /);
  });

  it('keeps counts exact but examples bounded on large manifests', async () => {
    const checker = new ManifestChecker(5);
    for (let i = 0; i < 10_000; i++) checker.addSourceKey(`k${i}`);
    for (let i = 0; i < 10_000; i += 2) checker.addLine(row(`k${i}`), i + 1);
    const r = checker.report();
    expect(r.counts.missing).toBe(5_000);
    expect(r.missing).toEqual(['k1', 'k3', 'k5', 'k7', 'k9']);
    expect(formatVerifyReport(r)).toMatch(/… and 4995 more$/);
  });

  it('an empty source and an empty manifest agree', async () => {
    expect((await verifyManifest([], [])).ok).toBe(true);
  });

  it('a missing manifest is a clear not-found error', async () => {
    const missing = join(tmpdir(), 'no-such-dir-cascade', 'manifest.jsonl');
    await expect(async () => {
      for await (const _ of readManifestLines(missing, new Stores({}, { schemes: [] }))) void _;
    }).rejects.toThrow(/not found.*no-such-dir-cascade/i);
  });
});
