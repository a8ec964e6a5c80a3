/**
 * `cascade models download`: fetch the public sample models into `<dir>` (default
 * `$CASCADE_ASSETS/models`, else ./assets/models) and verify their SHA-256.
 */
import { join, resolve } from 'node:path';
import { MODEL_SOURCES } from '../../config/model-sources.js';
import { downloadVerified } from '../../pipeline/models/model-download.js';

/** Download (or confirm) each named model; resolves with one line per model. */
export async function downloadModelsCommand(names: string[], o: { dir?: string }, fetchImpl: typeof fetch = fetch, sources = MODEL_SOURCES): Promise<string[]> {
  const unknown = names.filter((n) => !sources.some((s) => s.name === n));
  if (unknown.length)
    throw Object.assign(new Error(`unknown model(s) ${unknown.join(', ')}; choose from ${sources.map((s) => s.name).join(', ')}`), { name: 'DownloadError' });
  const dir = resolve(o.dir ?? join(process.env.CASCADE_ASSETS ?? 'assets', 'models'));
  const lines: string[] = [];
  for (const source of sources.filter((s) => names.length === 0 || names.includes(s.name))) {
    const r = await downloadVerified(source, dir, fetchImpl);
    const line = `${source.name.padEnd(12)} ${r.status.padEnd(10)} ${r.file}${r.bytes ? ` (${(r.bytes / 1e6).toFixed(1)} MB, sha256 ok, ${source.license})` : ' (sha256 ok)'}`;
    lines.push(line);
    process.stdout.write(`${line}\n`);
  }
  return lines;
}
