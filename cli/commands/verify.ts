/**
 * `cascade verify`: checks that a manifest has exactly one valid row per input of a source.
 * Lists the source as `cascade run` does (same extension filter, absolute local paths,
 * s3:// URLs, key-list lines trimmed and repeats dropped), so keys compare like with like. Exit
 * code 1 on any violation.
 */
import { resolve } from 'node:path';
import { ConfigError, readStructured, s3SettingsFromEnv } from '../../config/load-config.js';
import { AzureSettings, CascadeConfig, InputColumns, S3Settings } from '../../config/schema.js';
import { isRemoteUrl } from '../../pipeline/storage/location.js';
import { withStores } from '../../pipeline/storage/stores.js';
import { formatProvenanceReport, type ProvenanceReport, verifyProvenance } from '../../pipeline/results/verify-provenance.js';
import { isManifestShardKey, MANIFEST_KEY } from '../../pipeline/results/output-layout.js';
import { formatVerifyReport, readManifestLines, verifyManifest, type VerifyReport } from '../../pipeline/results/verify-manifest.js';
import { listInputs } from '../../producers/inputs/input-formats.js';
import { refsOf } from '../../producers/inputs/listed-input.js';

export interface VerifyOptions {
  manifest: string;
  source: string;
  /** Comma-separated extensions (default: the config file's, else the run default). */
  extensions?: string;
  /** The run's config file: its `extensions`, `sources.columns`, `s3` and `azure` settings are used (models are not needed). */
  config?: string;
  json?: boolean;
}

/** The settings verify shares with the run: extensions, input columns and the stores' (S3, Azure), from the config file and environment. */
async function runSettings(file: string | undefined): Promise<{ extensions: unknown; s3: unknown; azure: unknown; columns: InputColumns | undefined }> {
  if (!file) return { extensions: undefined, s3: undefined, azure: undefined, columns: undefined };
  const { extensions, s3, azure, sources } = ((await readStructured(resolve(file), file)) ?? {}) as {
    extensions?: unknown;
    s3?: unknown;
    azure?: unknown;
    sources?: { columns?: unknown };
  };
  const columns = InputColumns.optional().safeParse(sources?.columns);
  if (!columns.success) throw new ConfigError(`invalid sources.columns in ${file}: ${columns.error.issues.map((i) => i.message).join('; ')}`);
  return { extensions, s3, azure, columns: columns.data };
}

/** The extension list of a run: the flag's, else the config file's, else the schema default. */
function extensionsOf(flag: string | undefined, fromFile: unknown): string[] {
  const raw =
    flag === undefined
      ? fromFile
      : flag
          .split(',')
          .map((e) => e.trim().toLowerCase())
          .filter(Boolean)
          .map((e) => (e.startsWith('.') ? e : `.${e}`));
  const parsed = CascadeConfig.shape.extensions.safeParse(raw);
  if (!parsed.success)
    throw new ConfigError(
      `${flag === undefined ? 'extensions (config file)' : '--extensions'}: expected extensions like .jpg,.png, got ${JSON.stringify(flag ?? fromFile)}`,
    );
  return parsed.data;
}

/**
 * The output location of the run whose manifest `--manifest` names, as readManifestLines reads
 * it: the folder or prefix itself, or the parent of its manifest.jsonl or of its
 * manifest/part-*.parquet shard; null for a manifest file under another name (no run location
 * beside it to check).
 */
export function runLocation(manifest: string): string | null {
  const shard = manifest.split('/').slice(-2).join('/');
  const name = manifest === MANIFEST_KEY || manifest.endsWith(`/${MANIFEST_KEY}`) ? MANIFEST_KEY : isManifestShardKey(shard) ? shard : null;
  if (name !== null) return isRemoteUrl(manifest) ? manifest.slice(0, -name.length) : resolve(manifest, ...name.split('/').map(() => '..'));
  if (manifest.endsWith('.jsonl') || manifest.endsWith('.parquet')) return null;
  return manifest;
}

/** Verify the manifest against the source; prints the report and sets exit code 1 on a violation. */
export async function verifyCommand(o: VerifyOptions): Promise<VerifyReport & { provenance: ProvenanceReport | null }> {
  const settings = await runSettings(o.config);
  const s3Settings = S3Settings.safeParse(s3SettingsFromEnv(settings.s3, process.env) ?? settings.s3 ?? {});
  if (!s3Settings.success)
    throw new ConfigError(
      `invalid s3 settings${o.config ? ` in ${o.config}` : ''}: ${s3Settings.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  const azureSettings = AzureSettings.optional().safeParse(settings.azure);
  if (!azureSettings.success)
    throw new ConfigError(
      `invalid azure settings${o.config ? ` in ${o.config}` : ''}: ${azureSettings.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  const extensions = extensionsOf(o.extensions, settings.extensions);
  return withStores({ s3: s3Settings.data, azure: azureSettings.data }, async (stores) => {
    // `cascade run` stores absolute local paths as keys; resolve the source the same way.
    const source = isRemoteUrl(o.source) ? o.source : resolve(o.source);
    // The same listing rules as the run: a key listed twice is one input, and is counted as a repeat.
    let dropped = 0;
    const refs = refsOf(listInputs(source, { extensions, stores, columns: settings.columns, onDuplicate: () => dropped++ }));
    const checked = await verifyManifest(refs, readManifestLines(o.manifest, stores));
    const rows: VerifyReport = { ...checked, sourceDuplicates: checked.sourceDuplicates + dropped };
    // Beside a run's manifest lie its result parts and summary: check who wrote them, with what.
    const dir = runLocation(o.manifest);
    const provenance = dir ? await verifyProvenance(stores.open(dir)) : null;
    const report: VerifyReport & { provenance: ProvenanceReport | null } = { ...rows, ok: rows.ok && (provenance?.ok ?? true), provenance };
    process.stdout.write(
      o.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatVerifyReport(rows)}${provenance ? `\n${formatProvenanceReport(provenance)}` : ''}\n`,
    );
    if (!report.ok) process.exitCode = 1;
    return report;
  });
}
