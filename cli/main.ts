/**
 * The `cascade` command line.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { CascadeError, EXIT_USAGE } from '../config/errors.js';
import { runCommand } from './commands/run.js';
import { inspectModelCommand } from './commands/models-inspect.js';
import { downloadModelsCommand } from './commands/models-download.js';
import { registerFleetCommands } from './fleet-commands.js';
import { cascadeOptions, columnOptions } from './cascade-flags.js';
import { selfCalibrationOptions } from './self-calibration-flags.js';
import { calibrateCommand } from './commands/calibrate.js';
import { calibrateChainCommand, configHasStages } from './commands/calibrate-chain.js';
import { searchSaverCommand } from './commands/search-saver.js';
import { frontierCommand } from './commands/frontier.js';
import { reportingCalibrationErrors } from './calibration-data.js';
import { verifyCommand } from './commands/verify.js';
import { exportReviewCommand, REVIEW_EXPORT_FORMATS } from './commands/export-review.js';
import { exportGroundTruthCommand, exportImagefolderCommand, exportLabelStudioConfigCommand } from './commands/export-formats.js';
import { exportFinalCommand } from './commands/export-final.js';
import { importReviewsCommand } from './commands/import-reviews.js';
import { addLogOptions } from './logger.js';
import { redactSecrets } from './redact.js';
import { ConfigError } from '../config/load-config.js';
import { ConfidenceMetric, SAMPLE_FREE_METRICS } from '../config/schema.js';
import { CALIBRATION_RULES } from '../pipeline/calibration/calibrate.js';
import { RISK_METHODS } from '../pipeline/calibration/risk-control.js';
import { ReviewReason } from '../pipeline/results/review-export.js';

function number(name: string, min: number, max: number) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}`);
    return n;
  };
}

/** A whole number of at least `min`. */
function integer(name: string, min: number) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number of at least ${min}`);
    return n;
  };
}

/** Build the CLI program (exported for tests). */
export function buildProgram(): Command {
  const program = new Command('cascade')
    .description('Label image collections with a little-big model cascade on BullMQ.')
    .version(packageVersion(), '-V, --version', "print Cascade's version")
    .option('--debug', 'print stack traces with errors (also CASCADE_DEBUG=1)')
    // A usage error is one line like every other error (`cascade: unknown option '--x' (--help
    // for usage)`), not the error followed by the whole help text.
    .configureOutput({ outputError: (message, write) => write(`cascade: ${message.trim().replace(/^error: /, '')} (--help for usage)\n`) })
    // Commander's own usage errors (unknown option, missing argument) are thrown to main(),
    // which exits 2 for them; help and --version exit 0.
    .exitOverride();

  selfCalibrationOptions(
    cascadeOptions(
      program
        .command('run')
        .description('run the whole cascade in one process: list, label, merge (starts a private redis-server when REDIS_URL is unset)')
        .argument('<source>', 'a local folder, s3://bucket/prefix, az://container/prefix, or a key-list file')
        .requiredOption('--out <location>', 'output directory, s3://bucket/prefix or az://container/prefix for manifest.jsonl and summary.json'),
      number,
    ),
  )
    .option('--run-id <id>', 'run id (default: derived from source, output and models)')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print the summary as JSON')
    .option('--fail-on-drift', 'exit 1 when the audit says DRIFT: agreement below what the calibration promised (audit.expectAgreement)')
    .action(async (source: string, opts) => {
      await runCommand(source, opts);
    });

  program
    .command('verify')
    .description('check a manifest has exactly one valid row per input of a source (exit 1 on missing, duplicate, unknown or invalid rows)')
    .requiredOption(
      '--manifest <location>',
      'manifest.jsonl or a manifest/part-*.parquet shard (local, s3://… or az://…), or the output directory holding the manifest',
    )
    .requiredOption('--source <source>', "the run's source: a local folder, s3://bucket/prefix, az://container/prefix, or a key-list file")
    .option('--extensions <list>', "comma-separated extensions the run listed (default: the config file's, else the run default)")
    .option('--config <file>', "the run's config file, for its extensions and s3 and azure settings")
    .option('--json', 'print the report as JSON')
    .action(async (opts) => {
      await verifyCommand(opts);
    });

  const calibrationOptions = (cmd: Command) =>
    columnOptions(cmd)
      .requiredOption(
        '--images <source>',
        'calibration images: a folder, s3://bucket/prefix, a key-list file, WebDataset shards (shards/{000000..000009}.tar) or Parquet files (data/*.parquet)',
      )
      .option(
        '--labels <csv>',
        'ground truth CSV (columns file,class_index,…; shard samples as <shard>#<key>); without it, the shards’ own labels (.cls, --label-column) or only the label-free rule',
      )
      .option('--label-column <name>', 'Parquet source: the column of class indices, the ground truth instead of --labels')
      .addOption(
        new Option(
          '--rule <rule>',
          'selection rule: guaranteed (default; agreement with big ≥ target with probability ≥ 1 − delta), guaranteed-drop (labels; accuracy ≥ big − max-drop, same guarantee), or the point estimates tinysaver, no-loss, label-free',
        ).choices(CALIBRATION_RULES),
      )
      .option('--max-drop <d>', 'no-loss and guaranteed-drop rules: accept cascade accuracy down to big − d', number('max drop', 0, 1))
      .option('--target-agreement <a>', 'guaranteed and label-free rules: little/big agreement required on kept images', number('target agreement', 0, 1), 0.99)
      .option('--delta <d>', 'guaranteed rules: the promise may fail with probability at most d', number('delta', 0.0001, 0.5), 0.05)
      .addOption(
        new Option(
          '--method <m>',
          'guaranteed rules: ltt (Learn-then-Test fixed sequence, default), sgr, or ltt-batch (the promise covers the realised agreement of a batch as large as the sample)',
        ).choices(RISK_METHODS),
      )
      .addOption(
        new Option(
          '--metric <m...>',
          'confidence metrics to compare (default: rank for guaranteed rules, margin and pnorm for a chain’s; else maxprob, margin, entropy)',
        ).choices(ConfidenceMetric.options),
      )
      .option(
        '--calibration-fraction <f>',
        'fraction of images calibrated on (deterministic hash split); the rest is the test half',
        number('calibration fraction', 0.01, 1),
        0.5,
      )
      .option('--cache <dir>', 'probability cache directory (default: $XDG_CACHE_HOME/cascade/probabilities; timings go to …/cascade/timings)')
      .option('--no-cache', 'run and time the models even when their probabilities and timings are cached')
      .option('--probe-images <n>', 'images each model is timed on for the cost verdict (spread over the listing)', number('probe images', 1, 100000), 32)
      .option('--probe-timeout <s>', "seconds a model's timing probe may take", number('probe timeout', 0.01, 86400), 300)
      .option('--config <file>', 'config file (YAML or JSON) for providers, threads, limits, S3')
      .option('--no-progress', 'no progress bar')
      .option('--json', 'print JSON');

  calibrationOptions(
    program
      .command('calibrate')
      .description(
        'choose the threshold and metric for a little/big pair (or every threshold of a chain, --stages): score cached probabilities, apply the guaranteed rule (default) or a point-estimate one, write calib.json, curve CSV/JSON and an SVG plot',
      )
      .option('--little <model>', 'little model: .onnx file or model spec')
      .option('--big <model>', 'big model: .onnx file or model spec')
      .option('--stages <models...>', 'an N-stage chain instead, tiny first, big last (default: the config file’s stages:, if any)')
      .option(
        '--reviews <location>',
        "a reviewed run's output: its human labels (the random slice's) are the ground truth, its reviewed images in --images the sample",
      )
      .option('--all-reviews', 'with --reviews: the picked (likeliest wrong) reviews too — a biased sample')
      .requiredOption('--out <calib.json>', 'where to write calib.json (the curve and plot go beside it)'),
  ).action(async (opts) => {
    await reportingCalibrationErrors(async () => {
      const chain = opts.stages !== undefined || (!opts.little && !opts.big && (await configHasStages(opts.config)));
      if (chain && opts.reviews !== undefined) throw new ConfigError('--reviews calibrates a little/big pair; a chain (--stages) takes --labels');
      await (chain ? calibrateChainCommand(opts) : calibrateCommand(opts));
    });
  });

  calibrationOptions(
    program
      .command('search-saver')
      .description('TinySaver search: calibrate every candidate little model cheaper than the big one and rank them by expected compute')
      .requiredOption('--big <model>', 'big model: .onnx file or model spec')
      .requiredOption('--candidates <models...>', 'candidate little models (.onnx files or model specs)')
      .option('--markdown', 'print the table as Markdown'),
  ).action(async (opts) => {
    await reportingCalibrationErrors(() => searchSaverCommand(opts));
  });

  columnOptions(program.command('frontier'))
    .description(
      'price every model, pair and chain (up to 3) of --models by measured machine time on this machine and mark the cost/accuracy frontier (top-1 with --labels, else agreement with the dearest model)',
    )
    .requiredOption('--models <models...>', 'the models (.onnx files or model specs), in any order: chains run cheaper → dearer by measured cost')
    .requiredOption('--images <source>', 'images: a folder, s3://bucket/prefix, a key-list file, WebDataset shards (….tar) or Parquet files (….parquet)')
    .option(
      '--labels <csv>',
      'ground truth CSV (columns file,class_index,…; shard samples as <shard>#<key>): judge by top-1 instead of agreement with the dearest model (default: the shards’ own labels, if any)',
    )
    .option('--label-column <name>', 'Parquet source: the column of class indices, the ground truth instead of --labels')
    .option('--target-agreement <a>', "guaranteed rule: agreement with each chain's last model on images kept early", number('target agreement', 0, 1), 0.95)
    .option('--delta <d>', 'guaranteed rule: the promise may fail with probability at most d', number('delta', 0.0001, 0.5), 0.05)
    .addOption(
      new Option('--metric <m...>', 'confidence metrics (default: margin and pnorm for the guaranteed rule, maxprob with --threshold)').choices(
        SAMPLE_FREE_METRICS,
      ),
    )
    .option(
      '--threshold <t>',
      'a fixed threshold at every stage but the last instead of the guaranteed rule (as `cascade run --threshold`)',
      number('threshold', 0, 1),
    )
    .option(
      '--calibration-fraction <f>',
      'guaranteed rule: fraction of images thresholds are certified on; figures come from the rest',
      number('calibration fraction', 0.01, 0.99),
      0.5,
    )
    .option('--max-stages <n>', 'longest chain tried', number('max stages', 1, 5), 3)
    .option('--probe-images <n>', 'images each model is timed on (spread over the listing)', number('probe images', 1, 100000), 32)
    .option('--probe-timeout <s>', "seconds a model's timing probe may take", number('probe timeout', 0.01, 86400), 300)
    .option('--cache <dir>', 'probability cache directory (default: $XDG_CACHE_HOME/cascade/probabilities; timings go to …/cascade/timings)')
    .option('--no-cache', 'score and time the models even when cached, and store nothing')
    .option('--config <file>', 'config file (YAML or JSON) for providers, threads, numerics, batch size, limits, S3')
    .option('--out <dir>', 'write frontier.json, frontier.svg and frontier.png here')
    .option('--markdown', 'print the table as Markdown')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print JSON')
    .action(async (opts) => {
      await reportingCalibrationErrors(() => frontierCommand(opts));
    });

  const models = program.command('models').description('inspect models');
  models
    .command('inspect')
    .description('show a model’s inputs, outputs, execution provider and MACs per image')
    .argument('<model>', '.onnx file or model spec (.yaml/.json)')
    .option('--providers <list>', 'execution providers to open it on, tried in order (e.g. webgpu,cpu)', 'cpu')
    .option('--json', 'print as JSON')
    .action(async (model: string, opts) => {
      await inspectModelCommand(model, opts);
    });
  models
    .command('download')
    .description('download the public sample models (ONNX zoo) and their label file and verify their SHA-256; a file that does not match is not kept')
    .argument('[names...]', 'files to fetch (default: all): shufflenet, mobilenetv2, imagenet-labels (a model brings its label file)')
    .option('--dir <dir>', 'put every file in this folder (default: models/ and labels/ under $CASCADE_ASSETS, else ./assets, where the specs read them)')
    .action(async (names: string[], opts) => {
      await downloadModelsCommand(names, opts);
    });

  const exports = program.command('export').description('export results of a finished run');
  exports
    .command('review')
    .description('the images worth a human look (errors, audit disagreements, low confidence) as Label Studio tasks or CSV')
    .requiredOption('--run <location>', "the run's output location (directory or s3://bucket/prefix)")
    .addOption(new Option('--format <f>', 'output format').choices(REVIEW_EXPORT_FORMATS).default(REVIEW_EXPORT_FORMATS[0]))
    .option('--out <file>', 'write here (a file or s3://bucket/key) instead of stdout')
    .option('--max-confidence <c>', 'low-confidence: final confidence below c', number('max confidence', 0, 1), 0.5)
    .option('--include <reasons>', `comma-separated: ${ReviewReason.options.join(', ')}`, ReviewReason.options.join(','))
    .option(
      '--local-files-root <dir>',
      'local images under dir become Label Studio /data/local-files/?d=… URLs (set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT to dir)',
    )
    .option('--budget <k>', 'at most k images: a random slice (unbiased accuracy) plus the likeliest wrong (--max-confidence ignored)', integer('budget', 1))
    .option('--random-share <s>', 'with --budget: the share of it given to the random slice', number('random share', 0, 1), 0.5)
    .action(async (opts) => {
      await exportReviewCommand(opts);
    });
  exports
    .command('ground-truth')
    .description('every labelled image as a SageMaker Ground Truth output manifest (source-ref, label attribute, <attribute>-metadata); error rows left out')
    .requiredOption('--run <location>', "the run's output location (directory or s3://bucket/prefix)")
    .option('--out <file>', 'write here (a file or s3://bucket/key) instead of stdout (e.g. output.manifest)')
    .option('--label-attribute <name>', 'the label attribute name', 'label')
    .option('--job-name <name>', "the job name in each row's metadata (default: cascade-<run id>)")
    .option('--allow-local-refs', 'write images that are not s3:// URLs as local paths in source-ref (Ground Truth cannot read them; refused by default)')
    .option('--with-reviews', "human labels from the run's reviews.jsonl win (human-annotated: yes)")
    .action(async (opts) => {
      await exportGroundTruthCommand(opts);
    });
  exports
    .command('imagefolder')
    .description('every labelled image as a Hugging Face imagefolder metadata.jsonl, file_name relative to --root; error rows left out')
    .requiredOption('--run <location>', "the run's output location (directory or s3://bucket/prefix)")
    .requiredOption('--root <dir>', 'the dataset root (folder or s3://bucket/prefix) metadata.jsonl belongs in')
    .option('--out <file>', 'write here (a file or s3://bucket/key) instead of stdout (e.g. <root>/metadata.jsonl)')
    .option('--skip-outside', 'leave out (and count) images outside --root instead of failing')
    .option('--with-reviews', "human labels from the run's reviews.jsonl win (stage human, confidence 1)")
    .action(async (opts) => {
      await exportImagefolderCommand(opts);
    });
  exports
    .command('label-studio-config')
    .description("the Label Studio labeling config (one <Choice> per class) for the run's label file, matching `export review` tasks")
    .option('--labels <file>', "the run's label file (imagenet_class_index.json, one name a line, …)")
    .option('--model <spec>', 'or the model spec whose labels: the run used')
    .option('--run <location>', "check that every class name in this run's manifest is a choice")
    .option('--out <file>', 'write here (a file or s3://bucket/key) instead of stdout')
    .action(async (opts) => {
      await exportLabelStudioConfigCommand(opts);
    });

  exports
    .command('final')
    .description('one row per image: the human label where reviewed (label_source: human), else the cascade’s (label_source: <stage>); JSON Lines or Parquet')
    .requiredOption('--run <location>', "the run's output location (directory or s3://bucket/prefix)")
    .option('--out <file>', 'write here (a file or s3://bucket/key) instead of stdout (e.g. final.jsonl, final.parquet)')
    .option('--format <format>', 'jsonl or parquet (default: parquet when --out ends in .parquet, else jsonl)')
    .action(async (opts) => {
      await exportFinalCommand(opts);
    });

  const imports = program.command('import').description('bring results made elsewhere back into a run');
  imports
    .command('reviews')
    .description("human reviews (Label Studio JSON / JSON-MIN / CSV export, Ground Truth output manifest) into the run's reviews.jsonl, with a report")
    .argument('<files...>', 'review files')
    .requiredOption('--run <location>', "the run's output location (directory or s3://bucket/prefix)")
    .option('--labels <file>', "the run's label file (choices map to class indices through it)")
    .option('--model <spec>', 'or the model spec whose labels: the run used')
    .option('--label-attribute <name>', 'Ground Truth manifests: the label attribute (default: the one beside its -metadata)')
    .option('--json', 'print the report as JSON')
    .action(async (files: string[], opts) => {
      await importReviewsCommand(files, opts);
    });

  registerFleetCommands(program, number);
  addLogOptions(program);

  return program;
}

/** The version in Cascade's package.json. */
function packageVersion(): string {
  // dist/cli/main.js when built, cli/main.ts when the tests import the source.
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'cascade' && pkg.version) return pkg.version;
    } catch {
      // not at this level
    }
  }
  return 'unknown';
}

/** True when stack traces were asked for: `--debug` anywhere on the line, or CASCADE_DEBUG=1. */
function debugWanted(argv: readonly string[]): boolean {
  const env = process.env.CASCADE_DEBUG;
  return argv.includes('--debug') || (env !== undefined && env !== '' && env !== '0' && env !== 'false');
}

/**
 * Entry point: run the CLI. Exit codes: 0 success, 1 the run or check failed, 2 usage or
 * configuration error. Known errors (CascadeError) print one line `cascade: <message>`;
 * anything else prints one line too, with its stack only under `--debug` or CASCADE_DEBUG=1.
 */
export async function main(argv = process.argv): Promise<void> {
  const debug = debugWanted(argv);
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (and the help hint); help and --version are exit 0.
      process.exitCode = err.exitCode === 0 ? 0 : EXIT_USAGE;
      return;
    }
    const message = err instanceof Error ? err.message : String(err);
    const oneLine = message.split('\n')[0];
    const stack = debug && err instanceof Error && err.stack ? `\n${err.stack}` : '';
    // A known error's message is written for the user in full; an unexpected one shows its first line.
    // The last guard for secrets: an error from a library may quote a URL with its password.
    process.stderr.write(redactSecrets(`cascade: ${debug || err instanceof CascadeError ? message : oneLine}${stack}\n`));
    process.exitCode = err instanceof CascadeError ? err.exitCode : 1;
  }
}
