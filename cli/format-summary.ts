/**
 * Human-readable rendering of a run summary for the terminal.
 */
import type { RunSummary } from '../pipeline/results/manifest.js';
import { MANIFEST_KEY, MANIFEST_SHARDS_PREFIX, SUMMARY_KEY } from '../pipeline/results/output-layout.js';

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/** Render a summary as a short multi-line report. */
export function formatSummary(s: RunSummary): string {
  const lines = [
    `run ${s.runId}: ${s.images} images (${s.labeled} labeled, ${s.errors} errors) in ${s.wallSeconds.toFixed(1)} s, ${s.imagesPerSecond.toFixed(1)} images/s`,
    ...(s.cost ? [formatCost(s.cost)] : []),
    s.stages.length > 2
      ? `  reached: ${s.stages.map((st) => `${st.name} ${pct(st.reach ?? 0)}`).join(', ')} (${s.metric})`
      : s.route
        ? `  routed to ${s.stages[s.stages.length - 1]!.name}: ${pct(s.fractionToBig)}, big-only: ${s.route.reason}`
        : s.selfCalibration && !s.selfCalibration.decision?.certified
          ? `  routed to ${s.stages[s.stages.length - 1]!.name}: ${pct(s.fractionToBig)} (no certified threshold: nothing kept by ${s.stages[0]!.name})`
          : `  routed to ${s.stages[s.stages.length - 1]!.name}: ${pct(s.fractionToBig)} at ${s.metric} ≥ ${Number(s.threshold.toPrecision(4))}`,
    `  compute: ${s.macs.cascadeG.toFixed(1)} GMACs vs ${s.macs.bigOnlyG.toFixed(1)} big-only, ${pct(s.macs.saved)} of MACs saved`,
  ];
  for (const st of s.stages) {
    const ms = st.msPerImage;
    lines.push(
      `  ${st.name.padEnd(8)} ${String(st.images).padStart(7)} seen, ${String(st.accepted).padStart(7)} accepted, ${String(st.forwarded).padStart(6)} forwarded, ${String(st.errors).padStart(4)} errors; ` +
        `ms/img fetch ${ms.fetch.toFixed(1)} decode ${ms.decode.toFixed(1)} infer ${ms.infer.toFixed(1)}${stageCost(s, st.name, st.images - st.errors)}`,
    );
  }
  const pinned = formatProvenance(s);
  if (pinned) lines.push(pinned);
  if (s.calibration) {
    const c = s.calibration;
    lines.push(
      `  calibration (${c.rule}, ${c.metric} ≥ ${c.threshold.toFixed(3)}): promised ${pct(c.expected.fractionToBig)} to big at ${c.expected.gmacsPerImage.toFixed(3)} GMACs/image, ` +
        `realised ${pct(c.realised.fractionToBig)} at ${c.realised.gmacsPerImage.toFixed(3)}`,
    );
  }
  if (s.selfCalibration) lines.push(...formatSelfCalibration(s.selfCalibration, s.macs.bigOnlyG));
  if (s.audit) lines.push(formatAudit(s.audit));
  if (s.errors)
    lines.push(
      `  errors: ${Object.entries(s.errorsByKind)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
    );
  if (s.duplicatesDropped) lines.push(`  duplicates: ${s.duplicatesDropped} repeated key(s) in the source dropped (one row per key)`);
  // The Parquet shards are always written beside manifest.jsonl; the line names them only when they are all there is.
  const shards = s.manifest && !s.manifest.jsonl ? s.manifest.parquetShards : null;
  const manifest =
    shards === null
      ? joinOut(s.out, MANIFEST_KEY)
      : `${joinOut(s.out, MANIFEST_SHARDS_PREFIX)} (${shards} Parquet shard${shards === 1 ? '' : 's'}, no manifest.jsonl)`;
  lines.push(`  manifest: ${manifest}`, `  summary:  ${joinOut(s.out, SUMMARY_KEY)}`);
  return lines.join('\n');
}

/** A stage's measured cost per image it inferred, e.g. "; 12.3 ms cpu/img". */
function stageCost(s: RunSummary, name: string, inferred: number): string {
  const c = s.cost?.stages.find((st) => st.name === name);
  if (!c || inferred === 0) return '';
  return `; ${((1000 * c.seconds) / inferred).toFixed(1)} ms ${c.workerClass}/img`;
}

/** Seconds of machine time by worker class, e.g. "41.2 core-s" or "12.0 core-s + 3.1 GPU-s". */
function machineSeconds(stages: NonNullable<RunSummary['cost']>['stages']): string {
  const by = { cpu: 0, gpu: 0 };
  for (const st of stages) by[st.workerClass] += st.seconds;
  const parts = [...(by.cpu > 0 || by.gpu === 0 ? [`${by.cpu.toFixed(1)} core-s`] : []), ...(by.gpu > 0 ? [`${by.gpu.toFixed(1)} GPU-s`] : [])];
  return parts.join(' + ');
}

/** Money with enough digits to show small amounts, e.g. "$0.0005", "€1.23", "12.50 CHF". */
export function formatMoney(amount: number, currency: string): string {
  const digits = amount === 0 || amount >= 1 ? 2 : Math.min(8, Math.max(2, 1 - Math.floor(Math.log10(amount))));
  const symbol: Record<string, string> = { USD: '$', EUR: '€', GBP: '£', JPY: '¥' };
  const n = amount.toFixed(digits);
  return symbol[currency] ? `${symbol[currency]}${n}` : `${n} ${currency}`;
}

/**
 * The summary's lead: measured machine time against the big model alone, e.g. "cost: 41.2 core-s
 * vs 96.0 big-only, 57.1% saved ($0.0005 vs $0.0011)".
 */
export function formatCost(c: NonNullable<RunSummary['cost']>): string {
  const used = machineSeconds(c.stages);
  const unknown = c.unknownParts ? `; cost unknown for ${c.unknownParts} part(s) written without cost figures` : '';
  if (c.bigOnlySeconds === null) return `  cost: ${used} (big-only unknown: no image reached the last stage)${unknown}`;
  const money =
    c.price && c.price.bigOnly !== null ? ` (${formatMoney(c.price.used, c.price.currency)} vs ${formatMoney(c.price.bigOnly, c.price.currency)})` : '';
  const verdict = c.saved !== null && c.saved < 0 ? ' (costs more than big alone)' : ' saved';
  return `  cost: ${used} vs ${c.bigOnlySeconds.toFixed(1)} big-only, ${pct(c.saved ?? 0)}${verdict}${money}${unknown}`;
}

/** One line on what labelled the run, e.g. "models: little shufflenet (7c536d02e2f6), big ensemble (72a5bea47bb5); numerics auto (native) on cpu, onnxruntime 1.30.0". */
function formatProvenance(s: RunSummary): string | null {
  if (!s.stages.every((st) => st.model)) return null;
  const models = s.stages.map((st) => `${st.name} ${st.model!.name} (${st.model!.sha256.slice(0, 12)})`).join(', ');
  const p = s.stages.map((st) => st.provenance).filter((x) => x !== undefined);
  const distinct = (pick: (x: (typeof p)[number]) => string[]) => [...new Set(p.flatMap(pick))].join('+');
  const how = p.length
    ? `; numerics ${numericsText(
        distinct((x) => [x.numerics]),
        distinct((x) => x.numericsUsed ?? []),
      )} on ${distinct((x) => x.executionProviders)}, onnxruntime ${distinct((x) => x.onnxruntime)}`
    : '';
  return `  models: ${models}${how}`;
}

/** The run's numerics, with what the workers chose where that is not the mode itself: "auto (native)". */
function numericsText(mode: string, used: string): string {
  return used && used !== mode ? `${mode} (${used})` : mode;
}

function joinOut(out: string, name: string): string {
  return `${out.replace(/\/+$/, '')}/${name}`;
}

/** One line on audit agreement: e.g. "audit: 13/16 agree (81.3%, 95% CI 57.0–93.4%) below promised 99.0%: DRIFT". */
function formatAudit(a: NonNullable<RunSummary['audit']>): string {
  const ci = `95% CI ${pct(a.wilson.low)}–${pct(a.wilson.high)}`;
  const promise = a.promised === undefined ? '' : a.drift ? `, below the promised ${pct(a.promised)}: DRIFT` : `, promised ${pct(a.promised)}: ok`;
  return `  audit: ${a.agreeing}/${a.sampled} agree (${pct(a.agreement)}, ${ci})${promise}`;
}

/**
 * A self-calibrating run's lines, e.g. "self-calibration: target 95.0% agreement at δ 0.05, warm-up
 * 400 images (612.3 GMACs, 53.7% of big-only, counted above)" and its decision, or the refusal.
 */
export function formatSelfCalibration(c: NonNullable<RunSummary['selfCalibration']>, bigOnlyG: number): string[] {
  const share = bigOnlyG > 0 ? `, ${pct(c.warmupGmacs / bigOnlyG)} of big-only` : '';
  const head = `  self-calibration: target ${pct(c.targetAgreement)} agreement at δ ${c.delta}; warm-up ${c.warmupImages} images (${c.warmupGmacs.toFixed(1)} GMACs${share}, counted above)`;
  const d = c.decision;
  if (!d) return [head, '    no decision: the run had no warm-up images'];
  // A big-only route: the first stage ran on the warm-up only (the rest went straight to the last stage).
  const route =
    d.route === 'big-only' ? [`    big-only: after the warm-up every image went straight to the last stage, the first stage unread: ${d.routeReason}`] : [];
  if (d.certified)
    return [
      head,
      `    threshold ${Number(d.threshold.toPrecision(4))}${d.metric === 'rank' ? ' (rank against the warm-up)' : ''}: with probability ≥ ${1 - d.delta}, agreement on kept images ≥ ${pct(d.bound)} ` +
        `(warm-up: ${d.accepted} of ${d.sample} kept, ${pct(d.empiricalAgreement)} agreeing)`,
      ...route,
    ];
  // The reason names the strongest target this sample certifies and roughly how many images the requested one needs.
  return [head, `    REFUSED, every image went to the last stage: ${d.reason}`, ...route];
}
