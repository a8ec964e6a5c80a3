/**
 * `cascade models download`: fetch the public sample models and their label file and verify
 * each file's SHA-256. By default they land where config/models/*.yaml look for them:
 * `<assets>/models/…` and `<assets>/labels/…` with `<assets>` = `$CASCADE_ASSETS`, else ./assets;
 * `--dir d` puts every file straight into d instead.
 */
import { join, resolve } from 'node:path';
import { MODEL_SOURCES, type ModelSource } from '../../config/model-sources.js';
import { DownloadError, downloadVerified } from '../../pipeline/models/model-download.js';

/** The sources to fetch for `names` (all when none): each named one and the label file its spec needs, in table order. */
export function selectSources(names: readonly string[], sources: readonly ModelSource[]): ModelSource[] {
  const unknown = names.filter((n) => !sources.some((s) => s.name === n));
  if (unknown.length) throw new DownloadError(`unknown model(s) ${unknown.join(', ')}; choose from ${sources.map((s) => s.name).join(', ')}`);
  const wanted = new Set(names.length === 0 ? sources.map((s) => s.name) : names);
  for (const s of sources) if (wanted.has(s.name) && s.labels) wanted.add(s.labels);
  return sources.filter((s) => wanted.has(s.name));
}

/** Download (or confirm) each selected file; resolves with one line per file. */
export async function downloadModelsCommand(
  names: string[],
  o: { dir?: string },
  fetchImpl: typeof fetch = fetch,
  sources: readonly ModelSource[] = MODEL_SOURCES,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string[]> {
  const selected = selectSources(names, sources);
  const assets = resolve(env.CASCADE_ASSETS ?? 'assets');
  const lines: string[] = [];
  for (const source of selected) {
    const dir = o.dir !== undefined ? resolve(o.dir) : join(assets, source.folder);
    const r = await downloadVerified(source, dir, fetchImpl);
    const size = r.bytes >= 1e5 ? `${(r.bytes / 1e6).toFixed(1)} MB` : `${(r.bytes / 1e3).toFixed(1)} kB`;
    const line = `${source.name.padEnd(16)} ${r.status.padEnd(10)} ${r.file}${r.bytes ? ` (${size}, sha256 ok, ${source.license})` : ' (sha256 ok)'}`;
    lines.push(line);
    process.stdout.write(`${line}\n`);
  }
  return lines;
}
