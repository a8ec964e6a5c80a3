/**
 * `cascade submit`: only enqueues a run on a shared Redis and returns; worker processes
 * (`cascade worker`) label it. No model is opened for inference: stage GMACs come from the
 * spec or the ONNX graph.
 */
import { ConfigError } from '../../config/load-config.js';
import type { CascadeConfig } from '../../config/schema.js';
import { type CascadeFlags, checkCalibration, loadCascadeConfig } from '../cascade-flags.js';
import { listInputs, configuredSubmissionSource } from '../../producers/inputs/input-formats.js';
import { planRun } from '../../producers/plan-run.js';
import { preflightRun } from '../../producers/preflight.js';
import { submitRun, type SubmitResult } from '../../producers/submit-run.js';
import { startRuntime } from '../../workers/cascade-runtime.js';
import { redisTimeoutMs } from '../../queue/redis-connection.js';
import { emptySourceWarning } from '../empty-source.js';
import { createLogger } from '../logger.js';
import { parseSelfCalibration, type SelfCalibrationFlags } from '../self-calibration-flags.js';
import { redactUrl } from '../redact.js';
import { checkedRedisUrl } from '../redis-url-setting.js';

export interface SubmitCommandOptions extends CascadeFlags, SelfCalibrationFlags {
  out: string;
  runId?: string;
  json?: boolean;
}

/** The Redis URL a fleet command needs; a private redis-server would be invisible to the workers. */
export function requireRedisUrl(config: Pick<CascadeConfig, 'redisUrl'>, command: string, configFile?: string): string {
  if (!config.redisUrl)
    throw new ConfigError(`cascade ${command} needs a shared Redis: set REDIS_URL (e.g. redis://redis:6379) or 'redisUrl:' in the config file`);
  return checkedRedisUrl(config.redisUrl, process.env, configFile);
}

/** Enqueue a run of `source` and print its id (or JSON); resolves with what was submitted. */
export async function submitCommand(
  source: string,
  o: SubmitCommandOptions,
  write: (text: string) => void = (t) => process.stdout.write(t),
): Promise<SubmitResult & { out: string }> {
  const logger = createLogger();
  const log = (msg: string) => logger.info(msg);
  const selfCalibration = parseSelfCalibration(o);
  const config = await loadCascadeConfig(o, selfCalibration !== undefined);
  const redisUrl = requireRedisUrl(config, 'submit', o.config);
  const runtime = await startRuntime(config, redisUrl, [], log, { redisTimeoutMs: redisTimeoutMs() });
  try {
    // Before any model loads: URLs well formed, source listable, --out writable.
    await preflightRun(source, o.out, { extensions: config.extensions, columns: config.sources.columns, stores: runtime.stores });
    const spec = await planRun(config, source, o.out, runtime.models, o.runId, selfCalibration);
    await checkCalibration(o, spec);
    log(`run ${spec.runId}: ${spec.source} → ${spec.out} on ${redactUrl(redisUrl)} (prefix ${config.prefix})`);
    const result = await submitRun({
      spec,
      refs: configuredSubmissionSource(config, spec, runtime.stores),
      window: config.window.batches,
      windowBytes: config.window.bytes,
      relist: () => listInputs(spec.source, { extensions: config.extensions, columns: spec.columns, stores: runtime.stores }),
      tracker: runtime.tracker,
      queues: runtime.queues,
      output: runtime.openOutput(spec.out),
      overwrite: o.overwrite,
    });
    log(
      result.alreadySubmitted
        ? `run ${spec.runId} was already submitted; nothing added`
        : `queued ${result.images} images in ${result.batches} batches on stage-${spec.stages[0]!.name}` +
            (result.listing === 'continues' ? ` (a window of ${config.window.batches} batches; the merge role lists the rest as they finish)` : '') +
            (spec.selfCalibration ? ' (self-calibrating: the warm-up runs first; the other batches wait in Redis for its threshold)' : ''),
    );
    if (!result.alreadySubmitted && result.images === 0) logger.warn({ source: spec.source }, emptySourceWarning(spec.source, config.extensions));
    write(o.json ? `${JSON.stringify({ ...result, out: spec.out })}\n` : `${spec.runId}\n`);
    return { ...result, out: spec.out };
  } finally {
    await runtime.close();
  }
}
