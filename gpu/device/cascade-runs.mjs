// Cascade runs over the bundle's photos, one after another in the order planned, each with its
// own time limit and none started after the deadline. Modes:
//   cpu                 `cascade run`, executionProviders [cpu] (private redis-server from PATH)
//   webgpu-split        a fleet on one private redis-server: `cascade worker big` on [webgpu, cpu],
//                       `cascade worker little merge` on [cpu], `cascade submit` planning on the CPU
//                       with probeTolerance 1, so the GPU worker's probe difference is recorded
//                       (summary stages[].provenance.probeMaxDiff) rather than refused; a warm-up
//                       run of 16 photos first, so model loading is outside the measured run
//   webgpu-one-process  `cascade run` with [webgpu, cpu] for the whole process (little stage too);
//                       the run is planned on the same sessions, so the probe matches trivially
// Writes <out>/<id>/ (manifest.jsonl, summary.json, parts, plots), logs under <out>/logs, and
// <out>/runs.json with each run's outcome.
//
// Usage: node gpu/cascade-runs.mjs --app <dir> --images <dir> --little <spec> --out <dir>
//          --plan id=<big spec>:<mode>[,…] [--deadline <epoch s>] [--per-run 120]
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';

const argv = process.argv.slice(2);
const opt = (k, d) => {
  const i = argv.indexOf(k);
  return i < 0 ? d : argv[i + 1];
};
const app = resolve(opt('--app', '.'));
const images = resolve(opt('--images'));
const little = resolve(opt('--little'));
const out = resolve(opt('--out', 'runs'));
const deadline = Number(opt('--deadline', String(Date.now() / 1000 + 3600)));
const perRun = Number(opt('--per-run', '120'));
const plan = opt('--plan', '')
  .split(',')
  .filter(Boolean)
  .map((p) => {
    const [id, rest] = [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)];
    const cut = rest.lastIndexOf(':');
    return { id, big: resolve(rest.slice(0, cut)), mode: rest.slice(cut + 1) };
  });
const cli = join(app, 'bin', 'cascade.js');
const conf = join(out, 'conf');
const logs = join(out, 'logs');
mkdirSync(conf, { recursive: true });
mkdirSync(logs, { recursive: true });

const yaml = (o) => `${JSON.stringify(o, null, 2)}\n`; // JSON is YAML
writeFileSync(join(conf, 'cpu.yaml'), yaml({ executionProviders: ['cpu'] }));
writeFileSync(join(conf, 'webgpu.yaml'), yaml({ executionProviders: ['webgpu', 'cpu'] }));
writeFileSync(join(conf, 'submit.yaml'), yaml({ executionProviders: ['cpu'], probeTolerance: 1 }));
writeFileSync(join(conf, 'worker-cpu.yaml'), yaml({ executionProviders: ['cpu'], sources: { localRoots: [images] } }));
writeFileSync(join(conf, 'worker-webgpu.yaml'), yaml({ executionProviders: ['webgpu', 'cpu'], sources: { localRoots: [images] } }));

const results = [];
// Processes that wrote their results and then failed to exit cleanly (a GPU runtime crashing at teardown, say).
const exitNotes = [];
const save = () => writeFileSync(join(out, 'runs.json'), `${JSON.stringify(results, null, 2)}\n`);
const log = (msg) => console.error(`cascade-runs: ${msg}`);
const left = () => deadline - Date.now() / 1000;
// Unref'd: a timer racing a child's exit must not keep this process alive once the child is done.
const sleep = (ms) => new Promise((r) => setTimeout(r, ms).unref());
// The runs must start their own redis-server: never a REDIS_URL from outside.
const baseEnv = { ...process.env };
delete baseEnv.REDIS_URL;

for (const run of plan) {
  const record = { id: run.id, big: run.big, mode: run.mode };
  results.push(record);
  const limit = Math.min(perRun, left() - 5);
  if (limit < 20) {
    record.skipped = `out of time (${Math.round(left())} s left)`;
    log(`${run.id}: ${record.skipped}`);
    save();
    continue;
  }
  const dir = join(out, run.id);
  const t0 = Date.now();
  exitNotes.length = 0;
  log(`${run.id}: ${run.mode}, big ${run.big} (limit ${Math.round(limit)} s)`);
  try {
    if (run.mode === 'cpu' || run.mode === 'webgpu-one-process') {
      const config = join(conf, run.mode === 'cpu' ? 'cpu.yaml' : 'webgpu.yaml');
      await cascade(
        `${run.id}`,
        ['run', images, '--out', dir, '--little', little, '--big', run.big, '--config', config, '--json', '--no-progress'],
        limit * 1000,
      );
    } else if (run.mode === 'webgpu-split') {
      await splitRun(run, dir, limit * 1000);
    } else {
      throw new Error(`unknown mode ${run.mode}`);
    }
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
    record.ok = true;
    if (exitNotes.length) record.note = exitNotes.join('; ');
    record.summary = brief(summary);
    log(
      `${run.id}: ${summary.images} images in ${summary.wallSeconds.toFixed(1)} s, ${summary.imagesPerSecond.toFixed(1)} images/s; big on ${record.summary.stages.at(-1)?.providers?.join('+')}`,
    );
  } catch (err) {
    record.ok = false;
    record.error = String(err?.message ?? err)
      .split('\n')
      .slice(0, 3)
      .join(' | ');
    log(`${run.id}: FAILED: ${record.error}`);
  }
  record.seconds = Math.round((Date.now() - t0) / 100) / 10;
  record.out = dir;
  save();
}
save();

/** The figures of a summary the report needs. */
function brief(s) {
  return {
    images: s.images,
    labeled: s.labeled,
    errors: s.errors,
    wallSeconds: s.wallSeconds,
    imagesPerSecond: s.imagesPerSecond,
    fractionToBig: s.fractionToBig,
    stages: s.stages.map((st) => ({
      name: st.name,
      model: st.model?.name,
      seen: st.seen,
      accepted: st.accepted,
      msPerImage: st.msPerImage,
      providers: st.provenance?.executionProviders,
      probeMaxDiff: st.provenance?.probeMaxDiff,
      probeTolerance: st.provenance?.probeTolerance,
      workers: st.provenance?.workers,
    })),
  };
}

/** Run `cascade <args>` to completion within `ms`; its output goes to logs/<name>.log. */
async function cascade(name, args, ms, env = baseEnv) {
  const p = start(name, [cli, ...args], env);
  const result = await Promise.race([p.exited, sleep(ms).then(() => null)]);
  if (result === null) {
    await stop(p);
    throw new Error(`cascade ${args[0]} timed out after ${Math.round(ms / 1000)} s (log: ${p.logFile}): ${tail(p.logFile)}`);
  }
  if (result.code !== 0) {
    const wrote = args[0] === 'run' && existsSync(join(args[args.indexOf('--out') + 1], 'summary.json'));
    if (!wrote) throw new Error(`cascade ${args[0]} exited with ${result.code ?? result.signal}: ${tail(p.logFile)}`);
    exitNotes.push(`cascade ${args[0]} wrote its summary, then exited with ${result.code ?? result.signal}: ${tail(p.logFile, 1)}`);
  }
}

/** Little on the CPU and big on WebGPU, in separate worker processes sharing a private redis-server. */
async function splitRun(run, dir, ms) {
  const end = Date.now() + ms;
  const port = await freePort();
  const redisDir = join(out, 'redis', run.id);
  mkdirSync(redisDir, { recursive: true });
  const procs = [];
  try {
    const redis = start(
      `${run.id}-redis`,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir],
      baseEnv,
      'redis-server',
    );
    procs.push(redis);
    await waitForPort(port, Math.min(15_000, end - Date.now()));
    const env = { ...baseEnv, REDIS_URL: `redis://127.0.0.1:${port}` };
    procs.push(start(`${run.id}-worker-big`, [cli, 'worker', 'big', '--config', join(conf, 'worker-webgpu.yaml')], env));
    procs.push(start(`${run.id}-worker-little`, [cli, 'worker', 'little', 'merge', '--config', join(conf, 'worker-cpu.yaml')], env));
    const submit = (source, to, extra = []) =>
      cascade(
        `${run.id}-submit-${to === dir ? 'run' : 'warmup'}`,
        ['submit', source, '--out', to, '--little', little, '--big', run.big, '--config', join(conf, 'submit.yaml'), '--json', ...extra],
        Math.max(1000, end - Date.now()),
        env,
      );
    // Warm-up: 16 photos, all sent to the big stage (threshold 1), so both workers have loaded and
    // probed their models before the measured run.
    const keys = join(out, `${run.id}-warmup.txt`);
    const photos = readdirSync(images)
      .filter((f) => /\.(jpe?g|png|webp)$/i.test(f))
      .sort()
      .slice(0, 16);
    writeFileSync(keys, `${photos.map((f) => join(images, f)).join('\n')}\n`);
    const warm = join(out, 'warmup', run.id);
    await submit(keys, warm, ['--threshold', '1']);
    await waitForFile(join(warm, 'summary.json'), end, procs);
    await submit(images, dir);
    await waitForFile(join(dir, 'summary.json'), end, procs);
  } finally {
    // Workers first (they finish their batches and close), redis last.
    for (const p of procs.slice(1).reverse()) await stop(p);
    if (procs[0]) await stop(procs[0]);
  }
}

function start(name, args, env, command = process.execPath) {
  const logFile = join(logs, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(command, args, { env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise((res) => {
    child.once('exit', (code, signal) => res({ code, signal }));
    child.once('error', (err) => res({ code: -1, signal: String(err.message) }));
  });
  return { name, child, exited, logFile };
}

async function stop(p, graceMs = 10_000) {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const done = await Promise.race([p.exited, sleep(graceMs).then(() => null)]);
  if (done === null) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

async function waitForFile(file, end, procs) {
  while (!existsSync(file)) {
    const dead = procs.find((p) => p.child.exitCode !== null || p.child.signalCode !== null);
    if (dead) throw new Error(`${dead.name} exited (${dead.child.exitCode ?? dead.child.signalCode}) before ${file} was written: ${tail(dead.logFile)}`);
    if (Date.now() > end)
      throw new Error(
        `no ${file} in time; worker logs: ${procs
          .slice(1)
          .map((p) => `${p.name}: ${tail(p.logFile)}`)
          .join(' || ')}`,
      );
    await sleep(250);
  }
}

/** The first error line of a log (a stack trace's message) and its last lines. */
function tail(file, lines = 3) {
  try {
    const all = readFileSync(file, 'utf8').trim().split('\n');
    const first = all.find((l) => /\b\w*Error\b|error:|refuses|FATAL/i.test(l));
    const last = all.slice(-lines).join(' / ');
    return (first && !last.includes(first.trim()) ? `${first.trim()} … ${last}` : last).slice(-1200);
  } catch {
    return '';
  }
}

function freePort() {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

async function waitForPort(port, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((res) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        res(true);
      });
      s.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`redis-server did not listen on port ${port} in time`);
    await sleep(100);
  }
}
