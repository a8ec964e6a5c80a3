/**
 * The provenance half of `cascade verify`: every result part of a run should name a writer
 * that used the run's model (same sha256) and whose conformance probe stayed within the run's
 * tolerance. Parts without a writer come from versions before provenance and are counted.
 */
import pLimit from 'p-limit';
import { isObjectNotFound, type ObjectStore, readJson } from '../storage/object-store.js';
import { ResultPart, RunSummary } from './manifest.js';
import { PARTS_PREFIX, SUMMARY_KEY } from './output-layout.js';

export interface ProvenanceReport {
  ok: boolean;
  parts: number;
  /** Distinct writer processes (host:pid). */
  writers: number;
  /** Parts that record no writer. */
  unrecorded: number;
  /** Parts whose writer used another model or showed a probe beyond tolerance, up to `sampleLimit`. */
  mismatched: Array<{ key: string; reason: string }>;
  mismatchedCount: number;
  /** Parts written by another run (counted in mismatchedCount too). */
  foreign: number;
}

/** Check every part under `store`'s parts/ against the run's summary.json; null when the location holds no summary. */
export async function verifyProvenance(store: ObjectStore, sampleLimit = 20): Promise<ProvenanceReport | null> {
  let summary: RunSummary;
  try {
    summary = await readJson(store, SUMMARY_KEY, RunSummary);
  } catch (err) {
    if (isObjectNotFound(err)) return null;
    throw err;
  }
  const keys: string[] = [];
  for await (const o of store.list(PARTS_PREFIX)) if (o.key.endsWith('.json')) keys.push(o.key);
  const limit = pLimit(16);
  const writers = new Set<string>();
  const report: ProvenanceReport = { ok: true, parts: keys.length, writers: 0, unrecorded: 0, mismatched: [], mismatchedCount: 0, foreign: 0 };
  await Promise.all(
    keys.map((key) =>
      limit(async () => {
        const part = await readJson(store, key, ResultPart);
        // A part of another run (one fenced off by --overwrite that wrote on) is never this run's.
        if (part.runId !== summary.runId) {
          report.mismatchedCount += 1;
          report.foreign += 1;
          if (report.mismatched.length < sampleLimit) report.mismatched.push({ key, reason: `written by run ${part.runId}, not this run (${summary.runId})` });
          return;
        }
        const w = part.writer;
        // A part that labelled nothing (a self-calibrating batch of warm-up images only) ran no model.
        if (!w && part.stats.images === 0) return;
        if (!w) {
          report.unrecorded += 1;
          return;
        }
        writers.add(`${w.host}:${w.pid}`);
        const stage = summary.stages[part.stage];
        const reason = mismatch(w, stage);
        if (!reason) return;
        report.mismatchedCount += 1;
        if (report.mismatched.length < sampleLimit)
          report.mismatched.push({
            key,
            reason: `${reason} (${w.host} pid ${w.pid}, ${w.arch} [${w.cpuFlags.join(' ')}], onnxruntime ${w.onnxruntime}, ${w.provider})`,
          });
      }),
    ),
  );
  report.writers = writers.size;
  report.mismatched.sort((a, b) => a.key.localeCompare(b.key));
  report.ok = report.mismatchedCount === 0;
  return report;
}

/** Why a writer does not match its stage's pin, or null. */
function mismatch(w: NonNullable<ResultPart['writer']>, stage: RunSummary['stages'][number] | undefined): string | null {
  if (!stage) return 'part of a stage the run does not have';
  if (stage.model && w.sha256 !== stage.model.sha256) return `model sha256 ${w.sha256.slice(0, 12)}, but the run pins ${stage.model.sha256.slice(0, 12)}`;
  const tolerance = stage.provenance?.probeTolerance;
  if (tolerance !== undefined && !(w.probeMaxDiff <= tolerance))
    return `probe differed by ${w.probeMaxDiff.toFixed(4)}, beyond the run's tolerance ${tolerance}`;
  if (stage.provenance && !numericsAllowed(w.numerics, stage.provenance.numerics))
    return `numerics ${w.numerics}, but the run pins ${stage.provenance.numerics}`;
  return null;
}

/** Whether a part labelled with `used` kernels fits a run's numerics: under auto each worker chose exact or native. */
function numericsAllowed(used: string, run: string): boolean {
  return run === 'auto' ? used === 'exact' || used === 'native' : used === run;
}

/** Human-readable lines for the report. */
export function formatProvenanceReport(r: ProvenanceReport): string {
  const head = `provenance ${r.ok ? 'OK' : 'FAILED'}: ${r.parts} result parts by ${r.writers} worker process(es); ${r.mismatchedCount} from a worker whose model or probe did not match the run${r.unrecorded ? `; ${r.unrecorded} without a recorded writer (older version)` : ''}`;
  return [head, ...r.mismatched.map((m) => `  mismatch:  ${m.key}: ${m.reason}`)].join('\n');
}
