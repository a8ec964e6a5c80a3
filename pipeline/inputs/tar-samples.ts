/**
 * The samples of a WebDataset tar shard, read as one stream (tar-stream) without keeping any
 * member's bytes: a sample is a run of consecutive members sharing a key (the member's path up to
 * the first `.` of its file name), its image the member whose extension is `jpg`, `jpeg`, `png` or
 * `webp`; `.json`, `.cls`, `.txt` and other members are passed over. Each sample comes with where
 * its image's bytes are (offset and length in the shard), so a stage re-reads them with one
 * ranged read. Hostile shards give error samples, never a throw: a member name that is absolute or
 * has a `..` segment, an image member that is not a regular file, a sample without an image, and
 * a shard that stops parsing (truncated, not a tar) — the rest of it becomes one error sample.
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { MAX_LABEL_MEMBER_BYTES, type ShardLabel, webDatasetLabel } from './sample-label.js';
import type { SampleLocator } from './sample-locator.js';

/** Image members a sample is labelled from (WebDataset field names), lower case. */
export const IMAGE_FIELDS: readonly string[] = ['jpg', 'jpeg', 'png', 'webp'];

/** Fields whose members hold a sample's label, read only when labels are asked for. */
const LABEL_FIELDS: readonly string[] = ['cls', 'json'];

/** One sample of a shard: its key within the shard, where its image is, and (when asked for) its label. */
export interface TarSample {
  key: string;
  at: SampleLocator;
  label?: ShardLabel;
}

/** A member as the index sees it: name, type and where its data lies. */
interface Member {
  name: string;
  type: string;
  offset: number;
  size: number;
  /** A label member's text, when labels are asked for and it is small enough to read. */
  text?: string;
}

/** Splits a member name into the sample key and the field (`a/b.seg.jpg` → `a/b`, `seg.jpg`). */
export function splitMemberName(name: string): { key: string; field: string } {
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  return dot < 0 ? { key: name, field: '' } : { key: name.slice(0, dot), field: name.slice(dot + 1).toLowerCase() };
}

/** Why a member name may not name a sample (absolute, `..`, NUL, backslash), or null. */
export function hostileName(name: string): string | null {
  if (name.includes('\0')) return 'has a NUL character';
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) return 'is an absolute path';
  if (name.includes('\\')) return 'has a backslash';
  if (name.split('/').includes('..')) return "has a '..' segment";
  return null;
}

/** Yields the samples of the tar stream `input`, in shard order (see the module comment); `shard` names it in messages. */
export async function* tarSamples(input: Readable, shard: string, opts: { labels?: boolean } = {}): AsyncGenerator<TarSample> {
  const extract = tar.extract();
  let parseError: unknown = null;
  // The stream's own failure (a read error, a truncated body) reaches the iterator through extract.
  const piping = pipeline(input, extract).catch((err: unknown) => {
    parseError ??= err;
  });
  let group: Member[] = [];
  let end = 0;
  try {
    for await (const entry of extract) {
      const h = entry.header as tar.Header & { byteOffset?: number };
      const member: Member = { name: h.name, type: h.type ?? 'file', offset: h.byteOffset ?? 0, size: h.size ?? 0 };
      const isLabel = opts.labels === true && member.type === 'file' && LABEL_FIELDS.includes(splitMemberName(member.name).field);
      if (isLabel && member.size <= MAX_LABEL_MEMBER_BYTES) member.text = await readEntry(entry);
      else entry.resume();
      end = member.offset + member.size;
      if (member.type === 'directory' || member.type === 'pax-global-header') continue;
      if (group.length > 0 && splitMemberName(group[0]!.name).key !== splitMemberName(member.name).key) {
        yield sampleOf(group, shard, opts.labels === true);
        group = [];
      }
      group.push(member);
    }
  } catch (err) {
    parseError ??= err;
  } finally {
    // An early return by the consumer: stop reading the shard.
    if (!extract.destroyed && parseError === null) extract.destroy();
  }
  await piping;
  if (group.length > 0) yield sampleOf(group, shard, opts.labels === true);
  if (parseError !== null) {
    const message = `${shard}: cannot read the shard past byte ${end}: ${(parseError as Error).message ?? String(parseError)}`;
    yield { key: `@${end}`, at: { unreadable: { kind: 'decode', message } } };
  }
}

/** A small member's bytes as text. */
async function readEntry(entry: AsyncIterable<unknown>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of entry) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A sample's label from its `.cls` and `.json` members (the first of each). */
function labelOf(members: Member[], key: string, shard: string): ShardLabel {
  const text = (field: string): string | ShardLabel | undefined => {
    const m = members.find((x) => splitMemberName(x.name).field === field);
    if (!m) return undefined;
    if (m.type !== 'file') return { invalid: `${shard}#${key}.${field} is a ${m.type}, not a file` };
    return m.text ?? { invalid: `${shard}#${key}.${field} is ${m.size} bytes, more than a label's ${MAX_LABEL_MEMBER_BYTES}` };
  };
  const cls = text('cls');
  if (typeof cls === 'object') return cls;
  const json = cls === undefined ? text('json') : undefined;
  if (typeof json === 'object') return json;
  return webDatasetLabel(cls, json, `${shard}#${key}`);
}

/** The sample of a run of members sharing a key, with its label when `labels`. */
function sampleOf(members: Member[], shard: string, labels: boolean): TarSample {
  const sample = imageOf(members, shard);
  return labels && !('unreadable' in sample.at) ? { ...sample, label: labelOf(members, sample.key, shard) } : sample;
}

/** The sample of a run of members sharing a key: where its image is, or why it cannot be read. */
function imageOf(members: Member[], shard: string): TarSample {
  const { key } = splitMemberName(members[0]!.name);
  const hostile = members.map((m) => ({ m, why: hostileName(m.name) })).find((x) => x.why !== null);
  if (hostile)
    return { key, at: { unreadable: { kind: 'forbidden', message: `Forbidden: member ${JSON.stringify(hostile.m.name)} of ${shard} ${hostile.why}` } } };
  const image = members.find((m) => IMAGE_FIELDS.includes(splitMemberName(m.name).field));
  if (!image) {
    const fields = members.map((m) => splitMemberName(m.name).field || '(none)').join(', ');
    return {
      key,
      at: { unreadable: { kind: 'decode', message: `sample ${key} of ${shard} has no image member (.${IMAGE_FIELDS.join('/.')}), only: ${fields}` } },
    };
  }
  if (image.type !== 'file' && image.type !== 'contiguous-file')
    return {
      key,
      at: { unreadable: { kind: 'forbidden', message: `Forbidden: member ${JSON.stringify(image.name)} of ${shard} is a ${image.type}, not a file` } },
    };
  return { key, at: { offset: image.offset, length: image.size } };
}
