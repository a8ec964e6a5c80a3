/**
 * `cascade verify`: checks that a manifest has exactly one valid row per input of a source.
 * Lists the source as `cascade run` does (same extension filter, absolute local paths,
 * s3:// URLs), so keys compare like with like. Exit code 1 on any violation.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { resolve } from 'node:path';
import { ConfigError, s3SettingsFromEnv } from '../../config/load-config.js';
import { CascadeConfig, S3Settings } from '../../config/schema.js';
import { isS3Url } from '../../pipeline/location.js';
import { makeS3Client } from '../../pipeline/s3-store.js';
import { formatVerifyReport, readManifestLines, verifyManifest, type VerifyReport } from '../../pipeline/verify-manifest.js';
import { listSource } from '../../producers/list-source.js';

export interface VerifyOptions {
  manifest: string;
  source: string;
  /** Comma-separated extensions (default: the run's default list). */
  extensions?: string;
  json?: boolean;
}

/** The extension list of a run: the flag's, else the config schema's default. */
function extensionsOf(flag: string | undefined): string[] {
  const raw = flag === undefined ? undefined : flag.split(',').map((e) => e.trim().toLowerCase()).filter(Boolean).map((e) => (e.startsWith('.') ? e : `.${e}`));
  const parsed = CascadeConfig.shape.extensions.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`--extensions: expected comma-separated extensions like .jpg,.png, got ${JSON.stringify(flag)}`);
  return parsed.data;
}

/** Verify the manifest against the source; prints the report and sets exit code 1 on a violation. */
export async function verifyCommand(o: VerifyOptions): Promise<VerifyReport> {
  let client: S3Client | undefined;
  const s3 = () => (client ??= makeS3Client(S3Settings.parse(s3SettingsFromEnv({}, process.env) ?? {})));
  try {
    // `cascade run` stores absolute local paths as keys; resolve the source the same way.
    const source = isS3Url(o.source) ? o.source : resolve(o.source);
    const refs = listSource(source, { extensions: extensionsOf(o.extensions), s3 });
    const report = await verifyManifest(refs, readManifestLines(o.manifest, s3));
    process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatVerifyReport(report)}\n`);
    if (!report.ok) process.exitCode = 1;
    return report;
  } finally {
    client?.destroy();
  }
}
