/**
 * `cascade run`: the whole cascade in one process — private Redis when none is configured,
 * little, big and merge workers, the producer, a progress bar and the summary.
 */
import type { RunSummary } from '../../pipeline/results/manifest.js';
import { inputLocalRoots, listInputs, configuredSubmissionSource } from '../../producers/inputs/input-formats.js';
import { planRun } from '../../producers/plan-run.js';
import { preflightRun } from '../../producers/preflight.js';
import { claimOutput, submitRun } from '../../producers/submit-run.js';
import { allRoles, startRuntime } from '../../workers/cascade-runtime.js';
import { readRunCalibration } from '../../pipeline/plots/run-calibration.js';
import { RUN_CALIBRATION_KEY } from '../../pipeline/results/output-layout.js';
import { type CascadeFlags, checkCalibration, loadCascadeConfig } from '../cascade-flags.js';
import { formatSummary } from '../format-summary.js';
import { parseSelfCalibration, type SelfCalibrationFlags } from '../self-calibration-flags.js';
import { createLogger, logFn, registerBar } from '../logger.js';
import { TerminalBar } from '../progress-bar.js';
import { emptySourceWarning } from '../empty-source.js';
import { checkFailOnDrift, failOnDrift } from '../fail-on-drift.js';
import { exitNow } from '../exit-now.js';
import { startPrivateRedis } from '../private-redis.js';
import { checkedRedisUrl } from '../redis-url-setting.js';
import { waitForRun } from '../../queue/wait-for-run.js';
import { redisTimeoutMs } from '../../queue/redis-connection.js';
import { resolve } from 'node:path';

export interface RunOptions extends CascadeFlags, SelfCalibrationFlags {
  out: string;
  runId?: string;
  progress?: boolean;
  json?: boolean;
  /** Exit 1 when the run's audit says DRIFT. */
  failOnDrift?: boolean;
}

/** Run the cascade end to end over `source`; resolves with the summary. */
export async function runCommand(source: string, o: RunOptions): Promise<RunSummary> {
  const logger = createLogger();
  const log = logFn(logger);
  const selfCalibration = parseSelfCalibration(o);
  const config = await loadCascadeConfig(o, selfCalibration !== undefined);
  checkFailOnDrift(o.failOnDrift, config);
  // One process reads the images it was pointed at, and nothing else on this machine.
  config.sources.localRoots ??= inputLocalRoots(source);
  if (config.redisUrl) checkedRedisUrl(config.redisUrl, process.env, o.config);
  const privateRedis = config.redisUrl ? undefined : await startPrivateRedis();
  const redis = privateRedis ?? { url: config.redisUrl!, stop: async () => {} };
  if (privateRedis) log(`REDIS_URL is not set: started a private redis-server at ${redis.url}`, { redisPid: privateRedis.pid, redisDir: privateRedis.dir });
  // While the workers start (models load), a signal just stops the private redis-server: in its
  // own process group, the terminal's Ctrl-C no longer reaches it.
  const onEarlySignal = (signal: NodeJS.Signals) => void redis.stop().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  process.once('SIGINT', onEarlySignal).once('SIGTERM', onEarlySignal);
  // A shared Redis that cannot be reached fails within CASCADE_REDIS_TIMEOUT_MS, before models load.
  const runtime = await startRuntime(config, redis.url, allRoles(config), log, config.redisUrl ? { redisTimeoutMs: redisTimeoutMs() } : {}).catch(
    async (err) => {
      await redis.stop();
      throw err;
    },
  );
  // One signal drains the batches in flight, then stops the private redis-server (its own process
  // group, so the terminal's Ctrl-C did not reach it) and exits 130/143; a second exits 1 at once.
  process.off('SIGINT', onEarlySignal).off('SIGTERM', onEarlySignal);
  let stopping: Promise<never> | undefined;
  let unregisterBar = () => {};
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log(`${signal} again: exiting now without waiting for the batches in flight`, { level: 'warn' });
      void exitNow(1);
      return;
    }
    unregisterBar();
    bar?.stop();
    log(`${signal}: finishing the batches in flight, then stopping${privateRedis ? ' the private redis-server' : ''} (send it again to exit now)`, {
      level: 'warn',
    });
    stopping = (async () => {
      await runtime.close().catch(() => undefined);
      await redis.stop().catch(() => undefined);
      log('stopped cleanly');
      process.exit(signal === 'SIGINT' ? 130 : 143);
    })();
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  // Made when the listing starts, so its ETA does not count the time the models took to load.
  let bar: TerminalBar | null = null;
  try {
    // Before any model loads: URLs well formed, source listable, --out writable.
    await preflightRun(source, o.out, { extensions: config.extensions, columns: config.sources.columns, stores: runtime.stores });
    // Planning opens the models in the runtime's cache: the workers then borrow those same sessions.
    const spec = await planRun(config, source, o.out, runtime.models, o.runId, selfCalibration);
    await checkCalibration(o, spec);
    const { runId, source: src, out } = spec;
    log(`run ${runId}: ${src} → ${out}`);
    // Kept with the results so the merge can draw the calibration curve with this run's point
    // (little/big calibrations only: a chain's calib.json has no single curve).
    const curve = o.calibration ? await readRunCalibration(resolve(o.calibration)) : null;
    const output = runtime.openOutput(out);
    // The location is this run's before anything is written there.
    await claimOutput(output, spec, o.overwrite);
    if (curve) await output.put(RUN_CALIBRATION_KEY, JSON.stringify(curve));
    if (o.progress !== false && process.stderr.isTTY) {
      bar = new TerminalBar();
      bar.update(0, 1, 'little 0 big 0 errors 0');
      // Log lines go above the bar, never through it.
      unregisterBar = registerBar(bar);
    }
    const submitted = await submitRun({
      spec,
      refs: configuredSubmissionSource(config, spec, runtime.stores),
      window: config.window.batches,
      windowBytes: config.window.bytes,
      tracker: runtime.tracker,
      queues: runtime.queues,
      output,
      overwrite: o.overwrite,
      relist: () => listInputs(src, { extensions: config.extensions, columns: spec.columns, stores: runtime.stores }),
    });
    log(
      submitted.alreadySubmitted
        ? `run ${runId} was already submitted; waiting for it`
        : `listed ${submitted.images} images in ${submitted.batches} batches${submitted.listing === 'continues' ? ' so far (the rest as they finish)' : ''}`,
    );
    if (!submitted.alreadySubmitted && submitted.images === 0) log(emptySourceWarning(src, config.extensions), { level: 'warn', source: src });
    const summary = await waitForRun(
      runtime.tracker,
      runId,
      (p) => {
        const errors = p.stages.reduce((n, s) => n + s.errors, 0);
        bar?.update(
          p.final,
          Math.max(p.total ?? p.listedImages, 1),
          `little ${p.stages[0]?.accepted ?? 0} big ${p.stages[p.stages.length - 1]?.accepted ?? 0} errors ${errors}`,
        );
      },
      200,
      // Ends the wait (exit 1) once batches failed for good, with a `cascade retry` line only where
      // that can work: a private Redis is gone when this process ends.
      runtime.queues,
      privateRedis ? 'rerun' : 'cascade-retry',
    );
    unregisterBar();
    bar?.stop();
    process.stdout.write(o.json ? `${JSON.stringify(summary, null, 2)}\n` : `${formatSummary(summary)}\n`);
    if (o.failOnDrift) failOnDrift(runId, summary.audit);
    return summary;
  } catch (err) {
    // Stopping on a signal: whatever failed as the workers closed is not the run's error; the
    // signal handler exits with 130/143 once the shutdown is done.
    if (stopping) await stopping;
    throw err;
  } finally {
    if (stopping) await stopping;
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    unregisterBar();
    bar?.stop();
    await runtime.close();
    await redis.stop();
  }
}
