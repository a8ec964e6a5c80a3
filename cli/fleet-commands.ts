/**
 * The fleet commands — submit, worker, status, schedule, dashboard — registered on the
 * `cascade` program; kept apart from cli/main.ts so the one-process commands stay readable.
 */
import { type Command, Option } from 'commander';
import { cascadeOptions, type NumberParser } from './cascade-flags.js';
import { selfCalibrationOptions } from './self-calibration-flags.js';
import { dashboardCommand } from './commands/dashboard.js';
import { scheduleAddCommand, scheduleListCommand, scheduleRemoveCommand } from './commands/schedule.js';
import { statusCommand } from './commands/status.js';
import { submitCommand } from './commands/submit.js';
import { workerCommand } from './commands/worker.js';
import { retryCommand } from './commands/retry.js';

/** Add the fleet commands to `program`. */
export function registerFleetCommands(program: Command, number: NumberParser): void {
  selfCalibrationOptions(
    cascadeOptions(
      program
        .command('submit')
        .description('enqueue a run on the shared Redis (REDIS_URL) and print its id; `cascade worker` processes label it')
        .argument('<source>', 'a local folder, s3://bucket/prefix, or a key-list file')
        .requiredOption('--out <location>', 'output directory or s3://bucket/prefix for manifest.jsonl and summary.json'),
      number,
    ),
  )
    .option('--run-id <id>', 'run id (default: derived from source, output and models, as `cascade run` does)')
    .option('--json', 'print {runId, images, batches, alreadySubmitted, out} as JSON')
    .action(async (source: string, opts) => {
      await submitCommand(source, opts);
    });

  program
    .command('worker')
    .description('consume jobs until SIGTERM/SIGINT (then finish the batches in flight and exit 0): stage roles by name, merge, scheduler')
    .argument('<roles...>', 'stage names (little, big, or names under stages:), merge, scheduler')
    .option('--config <file>', 'config file (YAML or JSON): infrastructure and throughput settings; models come from each run')
    .option('--concurrency <n>', 'batch jobs processed at once per stage', number('concurrency', 1, 256))
    .option(
      '--max-batch <n>',
      'largest inference batch sent to this worker’s models (lowers each run’s; images per job are set at submit)',
      number('max batch', 1, 1024),
    )
    // Result-changing flags of run/submit: refused with a reason rather than "unknown option".
    .addOption(new Option('--little <model>').hideHelp())
    .addOption(new Option('--big <model>').hideHelp())
    .addOption(new Option('--threshold <t>').hideHelp())
    .addOption(new Option('--metric <m>').hideHelp())
    .addOption(new Option('--calibration <file>').hideHelp())
    .addOption(new Option('--batch-size <n>').hideHelp())
    .option('--metrics-port <port>', 'serve Prometheus metrics on http://0.0.0.0:<port>/metrics (0 = any free port)', number('metrics port', 0, 65535))
    .option('--metrics-host <host>', 'interface for the metrics endpoint', '0.0.0.0')
    .action(async (roles: string[], opts) => {
      await workerCommand(roles, opts);
    });

  program
    .command('retry')
    .description('put a run’s jobs that failed for good (all attempts used) back in their queues, once the cause is fixed')
    .argument('<runId>', 'run id')
    .option('--config <file>', 'config file (for redisUrl and prefix)')
    .option('--prefix <prefix>', 'BullMQ key prefix (default: the config’s, else cascade)')
    .option('--json', 'print the counts as JSON')
    .action(async (runId: string, opts) => {
      await retryCommand(runId, opts);
    });

  program
    .command('status')
    .description('progress of a run per stage (queued, active, done, failed, routed, errors), or the recent runs')
    .argument('[runId]', 'run id (omit to list recent runs)')
    .option('--config <file>', 'config file (for redisUrl and prefix)')
    .option('--prefix <prefix>', 'BullMQ key prefix (default: from the config, else cascade)')
    .option('--watch', 'redraw every --interval seconds until the run is done')
    .option('--fail-on-drift', 'exit 1 when the run is done and its audit says DRIFT')
    .option('--fail-on-errors', 'exit 1 when a shown run failed or is done with error rows (with --watch: once it has finished)')
    .option('--interval <s>', 'seconds between redraws', number('interval', 0.1, 3600), 1)
    .option('--limit <n>', 'runs listed without a run id', number('limit', 1, 10000), 20)
    .option('--json', 'print JSON')
    .action(async (runId: string | undefined, opts) => {
      await statusCommand(runId, opts);
    });

  const schedule = program.command('schedule').description('recurring runs (BullMQ job schedulers); a `cascade worker scheduler` process submits them');
  // With --target-agreement each firing is a self-calibrating run with its own warm-up.
  selfCalibrationOptions(
    cascadeOptions(
      schedule
        .command('add')
        .description('create or replace a schedule; {date} and {datetime} in --source/--out become the firing time (UTC)')
        .argument('<name>', 'schedule name (letters, digits, _ and -)')
        .option('--cron <pattern>', 'cron pattern, e.g. "0 2 * * *" (02:00 every day)')
        .option('--tz <zone>', 'time zone of the cron pattern (default UTC)')
        .option('--every <ms>', 'fixed interval in milliseconds instead of --cron', number('every', 1, Number.MAX_SAFE_INTEGER))
        .requiredOption('--source <source>', 'folder, s3://bucket/prefix or key-list file (may hold {date})')
        .requiredOption('--out <location>', 'output location, e.g. s3://bucket/labels/{date}/')
        .option(
          '--calibration-from <location>',
          "each firing certifies the little model's threshold from the human reviews of the latest reviewed run at or under this location (a run's output, or e.g. the schedule's own output prefix), with --max-drop or --target-agreement; refused: the schedule's own calibration (docs/reviews.md)",
        )
        .option('--max-drop <d>', 'with --calibration-from: accuracy against the human labels at most d below the big model alone, with probability ≥ 1 − δ'),
      number,
    ),
  ).action(async (name: string, opts) => {
    await scheduleAddCommand(name, opts);
  });
  schedule
    .command('list')
    .description('show the schedules')
    .option('--config <file>', 'config file (for redisUrl and prefix)')
    .option('--prefix <prefix>', 'BullMQ key prefix')
    .option('--json', 'print JSON')
    .action(async (opts) => {
      await scheduleListCommand(opts);
    });
  schedule
    .command('remove')
    .description('delete a schedule (runs it already started go on)')
    .argument('<name>', 'schedule name')
    .option('--config <file>', 'config file (for redisUrl and prefix)')
    .option('--prefix <prefix>', 'BullMQ key prefix')
    .action(async (name: string, opts) => {
      await scheduleRemoveCommand(name, opts);
    });

  program
    .command('dashboard')
    .description('serve bull-board over every cascade queue under the prefix, and a Runs page (/runs) with every run as `cascade status` shows it')
    .option('--port <port>', 'HTTP port', number('port', 0, 65535), 3000)
    .option('--host <host>', 'interface to listen on (0.0.0.0: every interface; refused without CASCADE_DASHBOARD_TOKEN or --allow-anonymous)', '127.0.0.1')
    .option('--allow-anonymous', 'serve without a token on a non-loopback --host (only where a proxy or a loopback-only port restricts who connects)')
    .option('--allow-writes', 'allow retry, clean, delete and pause; needs CASCADE_DASHBOARD_TOKEN (bearer token or basic-auth password)')
    .option('--config <file>', 'config file (for redisUrl and prefix)')
    .option('--prefix <prefix>', 'BullMQ key prefix')
    .action(async (opts) => {
      await dashboardCommand(opts);
    });
}
