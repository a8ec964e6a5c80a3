/**
 * From a review file's tasks to the run's review rows: each task matched to one manifest row (by
 * `data.key`, else by its image reference), its latest usable annotation mapped to a class index
 * through the run's label file, and everything that cannot be used said in one warning line per
 * task. Pure: the caller reads the files, the manifest and the label file.
 */
import type { AuditEntry } from '../audit/audit-part.js';
import type { ManifestRow } from '../results/manifest.js';
import type { ParsedAnnotation, ParsedTask, ReviewFormatName, ReviewRow } from './review-row.js';

/** What a task is matched against: the run's id, rows and label file. */
export interface ReviewRun {
  runId: string;
  rows: ReadonlyMap<string, ManifestRow>;
  /** Class names by index (the run's label file). */
  names: readonly string[];
  /** The last stage's audit answers, by key (they can settle a shared class name too). */
  audits: ReadonlyMap<string, AuditEntry>;
}

/** The review rows of one file, and why the tasks that gave none gave none. */
export interface MatchedReviews {
  reviews: ReviewRow[];
  warnings: string[];
  /** Tasks without any annotation (not yet labelled): counted, not warned one by one. */
  unannotated: number;
}

/** Class indices by name; a name several classes share maps to all of them. */
export function classesByName(names: readonly string[]): Map<string, number[]> {
  const byName = new Map<string, number[]>();
  names.forEach((n, i) => {
    const list = byName.get(n);
    if (list) list.push(i);
    else byName.set(n, [i]);
  });
  return byName;
}

/** Where Label Studio's local-files URLs point: `/data/local-files/?d=<path>` → `<path>`. */
function localFilesPath(image: string): string | null {
  const m = /^\/data\/local-files\/\?d=(.+)$/.exec(image);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return null;
  }
}

/** The manifest key a task names: `data.key`, else its image ref as a key, else a unique key ending in its local-files path. */
function matchKey(task: ParsedTask, run: ReviewRun, byBaseName: () => Map<string, string[]>): string | null {
  if (task.key !== null) return run.rows.has(task.key) ? task.key : null;
  if (task.image === null) return null;
  if (run.rows.has(task.image)) return task.image;
  const rel = localFilesPath(task.image);
  if (rel === null) return null;
  const base = rel.slice(rel.lastIndexOf('/') + 1);
  const found = (byBaseName().get(base) ?? []).filter((k) => k.endsWith(`/${rel}`));
  return found.length === 1 ? found[0]! : null;
}

/** An annotation's class index, or why it has none. */
function classOf(a: ParsedAnnotation, row: ManifestRow, run: ReviewRun, byName: Map<string, number[]>): { label: number } | { problem: string } {
  if (a.classIndex !== null) {
    const name = run.names[a.classIndex];
    if (name === undefined) return { problem: `class ${a.classIndex} is not in the run's label file (${run.names.length} classes)` };
    if (a.choice !== null && a.choice !== name) return { problem: `class ${a.classIndex} is "${name}" in the run's label file, not "${a.choice}"` };
    return { label: a.classIndex };
  }
  const choice = a.choice!;
  const classes = byName.get(choice);
  if (!classes) {
    // Review tasks name a class without a name by its index.
    if (/^\d+$/.test(choice) && Number(choice) < run.names.length) return { label: Number(choice) };
    return { problem: `unknown label "${choice}": not a class of the run's label file` };
  }
  if (classes.length === 1) return { label: classes[0]! };
  // A name several classes share is one choice whose hint lists them: the cascade's answer (or the
  // audit's) among them says which one the reviewer confirmed; otherwise nobody can tell.
  const audit = run.audits.get(row.key)?.big?.label;
  for (const known of [row.label, audit]) if (known !== null && known !== undefined && classes.includes(known)) return { label: known };
  return {
    problem: `"${choice}" names classes ${classes.join(' and ')} (the labeling config's hint) and the cascade answered neither, so which one is unknown`,
  };
}

/** Milliseconds of an annotation's time, -Infinity when unknown (an unknown time is never the latest). */
const timeMs = (a: ParsedAnnotation) => (a.at === null ? Number.NEGATIVE_INFINITY : Date.parse(a.at));

/** The review rows of a parsed file against the run. */
export function matchReviews(tasks: readonly ParsedTask[], run: ReviewRun, source: { format: ReviewFormatName; file: string }): MatchedReviews {
  const byName = classesByName(run.names);
  let baseNames: Map<string, string[]> | undefined;
  const byBaseName = () => {
    if (!baseNames) {
      baseNames = new Map();
      for (const key of run.rows.keys()) {
        const base = key.slice(key.lastIndexOf('/') + 1);
        baseNames.set(base, [...(baseNames.get(base) ?? []), key]);
      }
    }
    return baseNames;
  };
  const warnings: string[] = [];
  const byKey = new Map<string, { review: ReviewRow; ref: string; at: number }>();
  let unannotated = 0;
  for (const task of tasks) {
    const not = (why: string) => warnings.push(`${task.ref}: ${why}: not imported`);
    if (task.run !== null && task.run !== run.runId) {
      not(`a task of run ${task.run}, not of ${run.runId}`);
      continue;
    }
    const key = matchKey(task, run, byBaseName);
    if (key === null) {
      not(`${task.key ?? task.image ?? 'no key or image'} is not an image of run ${run.runId} (a task from another run?)`);
      continue;
    }
    if (task.annotations.length === 0) {
      unannotated++;
      continue;
    }
    const usable = task.annotations.filter((a) => !a.cancelled && (a.choice !== null || a.classIndex !== null));
    if (usable.length === 0) {
      const cancelled = task.annotations.filter((a) => a.cancelled).length;
      not(`its ${task.annotations.length} annotation(s) were ${cancelled > 0 ? 'cancelled or skipped' : 'skipped (no choice)'}`);
      continue;
    }
    const row = run.rows.get(key)!;
    const resolved = usable.map((a) => ({ a, c: classOf(a, row, run, byName) }));
    // The latest wins; of two at the same time (or none), the later one in the file.
    const latest = resolved.reduce((best, r) => (timeMs(r.a) >= timeMs(best.a) ? r : best));
    if ('problem' in latest.c) {
      not(latest.c.problem);
      continue;
    }
    const labels = new Set(resolved.map((r) => ('label' in r.c ? r.c.label : r.a.choice)));
    if (labels.size > 1) {
      const said = resolved.map((r) => `${r.a.annotator ?? r.a.id ?? '?'}: ${'label' in r.c ? run.names[r.c.label] : r.a.choice}`).join(', ');
      warnings.push(`${task.ref}: annotators disagree (${said}); the latest is kept`);
    }
    const review: ReviewRow = {
      key,
      label: latest.c.label,
      labelName: run.names[latest.c.label]!,
      reviewer: latest.a.annotator,
      reviewedAt: latest.a.at,
      annotations: usable.length,
      annotatorsDisagree: labels.size > 1,
      reasons: task.reasons,
      source: { format: source.format, file: source.file, task: task.ref },
    };
    const earlier = byKey.get(key);
    const at = timeMs(latest.a);
    if (earlier) {
      warnings.push(`${earlier.ref} and ${task.ref} review the same image ${key}; the later review is kept`);
      if (at < earlier.at) continue;
    }
    byKey.set(key, { review, ref: task.ref, at });
  }
  return { reviews: [...byKey.values()].map((v) => v.review), warnings, unannotated };
}

/**
 * Stored reviews merged with new ones, in manifest order: a review replaces the stored one of
 * its image unless the stored one is newer, so importing a file twice changes nothing.
 */
export function mergeReviews(
  stored: readonly ReviewRow[],
  incoming: readonly ReviewRow[],
  order: (key: string) => number,
): { rows: ReviewRow[]; added: number; replaced: number; unchanged: number; older: number } {
  const byKey = new Map(stored.map((r) => [r.key, r]));
  const counts = { added: 0, replaced: 0, unchanged: 0, older: 0 };
  for (const r of incoming) {
    const old = byKey.get(r.key);
    if (!old) counts.added++;
    else if (JSON.stringify(old) === JSON.stringify(r)) {
      counts.unchanged++;
      continue;
    } else if (old.reviewedAt !== null && r.reviewedAt !== null && Date.parse(r.reviewedAt) < Date.parse(old.reviewedAt)) {
      counts.older++;
      continue;
    } else counts.replaced++;
    byKey.set(r.key, r);
  }
  const rows = [...byKey.values()].sort((a, b) => order(a.key) - order(b.key));
  return { rows, ...counts };
}
