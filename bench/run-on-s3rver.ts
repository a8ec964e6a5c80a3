/**
 * Runs the cascade S3 → S3 against a local s3rver: uploads a folder to s3://images-in/photos/,
 * runs `cascade run` into s3://results/run/, and saves the manifest and summary locally.
 * Usage: node --import tsx bench/run-on-s3rver.ts <folder> <little> <big> <local-out-dir> [threshold]
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { runCommand } from '../cli/commands/run.js';
import { MANIFEST_KEY, SUMMARY_KEY } from '../pipeline/results/output-layout.js';
import { startS3 } from '../test/helpers/s3.js';

const [folder, little, big, localOut, threshold] = process.argv.slice(2);
if (!folder || !little || !big || !localOut) throw new Error('usage: run-on-s3rver.ts <folder> <little> <big> <local-out-dir> [threshold]');

const s3 = await startS3({ buckets: ['images-in', 'results'] });
try {
  const limit = pLimit(16);
  const files = await readdir(folder);
  await Promise.all(
    files.map((f) =>
      limit(async () => s3.client.send(new PutObjectCommand({ Bucket: 'images-in', Key: `photos/${f}`, Body: await readFile(join(folder, f)) }))),
    ),
  );
  console.error(`uploaded ${files.length} files to s3://images-in/photos/ at ${s3.endpoint}`);
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', CASCADE_S3_ENDPOINT: s3.endpoint });
  await runCommand('s3://images-in/photos/', { out: 's3://results/run/', little, big, threshold: threshold ? Number(threshold) : undefined, progress: false });
  await mkdir(localOut, { recursive: true });
  for (const name of [MANIFEST_KEY, SUMMARY_KEY]) {
    const body = await (await s3.client.send(new GetObjectCommand({ Bucket: 'results', Key: `run/${name}` }))).Body!.transformToString();
    await writeFile(join(localOut, name), body);
  }
  console.error(`saved s3://results/run/{${MANIFEST_KEY},${SUMMARY_KEY}} to ${localOut}`);
} finally {
  await s3.stop();
}
