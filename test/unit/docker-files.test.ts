/**
 * The container files cannot be built or run here (no Docker): check what can be checked —
 * they parse, every file they copy exists, their commands are real `cascade` commands with
 * valid roles, the configs they bake in load, the environment names are the ones the config
 * loader reads, health checks hit the endpoints the workers serve, images are pinned, and the
 * Grafana dashboard queries metrics that exist. The Kubernetes manifests: k8s-manifests.test.ts.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { validateRoles } from '../../cli/commands/worker.js';
import { buildProgram } from '../../cli/main.js';
import { loadConfig } from '../../config/load-config.js';
import { loadWorkerConfig } from '../../config/worker-config.js';
import { CascadeMetrics } from '../../workers/metrics.js';
import { stageStats } from '../helpers/stage-stats.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const DOCKER = join(ROOT, 'docker');
const read = (p: string) => readFile(join(ROOT, p), 'utf8');

type Service = {
  command?: string[];
  entrypoint?: string[];
  build?: { context: string; dockerfile: string };
  environment?: Record<string, string>;
  image?: string;
  deploy?: { replicas?: number };
};

/** Dockerfile instructions as [keyword, rest], continuation lines joined. */
function instructions(text: string): Array<[string, string]> {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [kw, ...rest] = l.split(/\s+/);
      return [kw!.toUpperCase(), rest.join(' ')];
    });
}

/** Check a `cascade …` argv: a registered command, and valid roles for `worker`. */
function checkCascadeArgs(args: string[]): void {
  const commands = buildProgram().commands.map((c) => c.name());
  expect(commands, args.join(' ')).toContain(args[0]);
  if (args[0] === 'worker') {
    const roles = args.slice(
      1,
      args.findIndex((a) => a.startsWith('--')),
    );
    expect(validateRoles(roles)).toEqual(roles);
  }
  const config = args[args.indexOf('--config') + 1];
  if (args.includes('--config')) expect(config).toMatch(/^\/app\/docker\/cascade(\.gpu)?\.yaml$/);
}

describe('docker/', () => {
  it('both Dockerfiles: multi-stage, npm ci as required, non-root, entrypoint and copied files exist', async () => {
    for (const [file, gpu] of [
      ['docker/Dockerfile', false],
      ['docker/Dockerfile.gpu', true],
    ] as const) {
      const ins = instructions(await read(file));
      const froms = ins.filter(([k]) => k === 'FROM').map(([, v]) => v);
      expect(froms.length, file).toBeGreaterThanOrEqual(2);
      if (gpu) expect(froms.at(-1)).toMatch(/^nvidia\/cuda:12\.[\d.]+-cudnn-runtime-/);
      else expect(froms.at(-1)).toMatch(/^node:20/);
      const runs = ins
        .filter(([k]) => k === 'RUN')
        .map(([, v]) => v)
        .join('\n');
      expect(runs).toMatch(/npm ci\b/);
      if (gpu) expect(runs).toMatch(/npm ci [^\n]*--onnxruntime-node-install=cuda12/);
      else expect(ins.some(([k, v]) => k === 'ENV' && /ONNXRUNTIME_NODE_INSTALL=skip/.test(v))).toBe(true);
      const user = ins.filter(([k]) => k === 'USER').at(-1)?.[1];
      expect(user, `${file} must drop root`).toBeDefined();
      expect(['root', '0']).not.toContain(user);
      const entry = JSON.parse(ins.find(([k]) => k === 'ENTRYPOINT')![1]) as string[];
      expect(entry).toEqual(['node', 'bin/cascade.js']);
      expect(existsSync(join(ROOT, 'bin/cascade.js'))).toBe(true);
      const cmd = JSON.parse(ins.find(([k]) => k === 'CMD')![1]) as string[];
      checkCascadeArgs(cmd);
      // Every COPY from the build context names files that exist in the repository.
      for (const [, v] of ins.filter(([k]) => k === 'COPY')) {
        if (v.startsWith('--from=')) continue;
        const parts = v.split(/\s+/);
        for (const src of parts.slice(0, -1)) expect(existsSync(join(ROOT, src)), `${file}: COPY ${src}`).toBe(true);
      }
      // The Dockerfile-specific ignore file keeps what the COPYs need.
      expect(existsSync(join(ROOT, `${file}.dockerignore`))).toBe(true);
    }
  });

  it('the configs baked into the images load, with the sample model specs', async () => {
    const env = { CASCADE_ASSETS: '/assets' };
    const cpu = await loadConfig({ file: join(DOCKER, 'cascade.yaml'), env });
    expect(cpu.executionProviders).toEqual(['cpu']);
    expect(cpu.little.path).toBe('/assets/models/shufflenet-v2-12-qdq.onnx');
    // The GPU worker's config is infrastructure only: runs bring their models and settings.
    const gpu = await loadWorkerConfig({ file: join(DOCKER, 'cascade.gpu.yaml'), env });
    expect(gpu.ignored).toEqual([]);
    expect(gpu.config.executionProviders).toEqual(['cuda', 'cpu']);
    expect(gpu.config.prefix).toBe(cpu.prefix);
  });

  it('compose.yaml: Redis with AOF, MinIO and its buckets, little (replicas) and big workers, merge/scheduler, dashboard', async () => {
    const compose = parse(await read('docker/compose.yaml'), { merge: true }) as { services: Record<string, Service> };
    const s = compose.services;
    expect(Object.keys(s)).toEqual(expect.arrayContaining(['redis', 'minio', 'minio-init', 'little', 'big', 'big-gpu', 'ops', 'dashboard']));
    expect(s.redis!.command!.join(' ')).toMatch(/--appendonly yes/);
    expect(s['minio-init']!.command!.join(' ')).toMatch(/mc mb --ignore-existing local\/images local\/results/);
    expect(s.little!.deploy!.replicas).toBeGreaterThanOrEqual(2);
    const roles = (name: string) => s[name]!.command!.slice(1, s[name]!.command!.indexOf('--config'));
    expect(roles('little')).toEqual(['little']);
    expect(roles('big')).toEqual(['big']);
    expect(roles('ops')).toEqual(['merge', 'scheduler']);
    for (const name of ['little', 'big', 'big-gpu', 'ops', 'dashboard']) {
      const svc = s[name]!;
      checkCascadeArgs(svc.command!);
      expect(existsSync(resolve(DOCKER, svc.build!.context, svc.build!.dockerfile)), `${name} build`).toBe(true);
      expect(svc.environment!.REDIS_URL).toBe('redis://redis:6379');
    }
    expect(s['big-gpu']!.build!.dockerfile).toBe('docker/Dockerfile.gpu');
    // The environment names are the ones the config loader reads (credentials: the AWS SDK's).
    const loader = await read('config/load-config.ts');
    for (const name of Object.keys(s.little!.environment!).filter((n) => !n.startsWith('AWS_ACCESS') && !n.startsWith('AWS_SECRET'))) {
      const readBy = name === 'CASCADE_LOG_LEVEL' ? await read('cli/logger.ts') : loader;
      expect(readBy, name).toContain(`env.${name}`);
    }
  });

  it('health checks: the images check /healthz, the compose workers /readyz, on the port --metrics-port serves', async () => {
    for (const file of ['docker/Dockerfile', 'docker/Dockerfile.gpu']) {
      const ins = instructions(await read(file));
      const check = ins.find(([k]) => k === 'HEALTHCHECK')?.[1];
      expect(check, file).toBeDefined();
      const cmd = JSON.parse(check!.slice(check!.indexOf('CMD ') + 4)) as string[];
      const defaults = JSON.parse(ins.find(([k]) => k === 'CMD')![1]) as string[];
      expect(cmd).toEqual(['node', 'docker/healthcheck.mjs', `http://127.0.0.1:${defaults[defaults.indexOf('--metrics-port') + 1]}/healthz`]);
      // The script is in the image: copied, and let through the ignore file.
      expect(ins.some(([k, v]) => k === 'COPY' && v.split(/\s+/).includes('docker/healthcheck.mjs'))).toBe(true);
      expect(await read(`${file}.dockerignore`)).toMatch(/^!docker\/healthcheck\.mjs$/m);
    }
    const compose = parse(await read('docker/compose.yaml'), { merge: true }) as {
      services: Record<string, Service & { healthcheck?: { test?: string[]; disable?: boolean }; ports?: string[] }>;
    };
    for (const name of ['little', 'big', 'big-gpu', 'ops']) {
      const svc = compose.services[name]!;
      const port = svc.command![svc.command!.indexOf('--metrics-port') + 1];
      expect(svc.healthcheck!.test, name).toEqual(['CMD', 'node', 'docker/healthcheck.mjs', `http://127.0.0.1:${port}/readyz`]);
    }
    // Commands that serve no /readyz do not inherit the check.
    expect(compose.services.dashboard!.healthcheck).toEqual({ disable: true });
    expect(compose.services.submit!.healthcheck).toEqual({ disable: true });
  });

  it('compose: every image pinned (no :latest), the dashboard published on the host loopback only and read-only', async () => {
    const compose = parse(await read('docker/compose.yaml'), { merge: true }) as { services: Record<string, Service & { ports?: string[] }> };
    for (const [name, svc] of Object.entries(compose.services)) {
      const tag = svc.image!.includes(':') ? svc.image!.slice(svc.image!.lastIndexOf(':') + 1) : undefined;
      expect(tag, `${name}: ${svc.image}`).toBeDefined();
      expect(tag).not.toBe('latest');
    }
    expect(compose.services.minio!.image).toMatch(/^minio\/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$/);
    expect(compose.services['minio-init']!.image).toMatch(/^minio\/mc:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$/);
    const dashboard = compose.services.dashboard!;
    expect(dashboard.ports).toEqual(['127.0.0.1:3000:3000']);
    expect(dashboard.command!.slice(0, 5)).toEqual(['dashboard', '--host', '0.0.0.0', '--port', '3000']);
    expect(dashboard.command).not.toContain('--allow-writes');
    // Off loopback without a token the dashboard refuses to start; the loopback-only port is what makes anonymous safe here.
    expect(dashboard.command).toContain('--allow-anonymous');
    expect(dashboard.environment!.REDIS_URL).toBe('redis://redis:6379');
  });

  it('grafana-dashboard.json: every series it queries is one Cascade exports, under that name', async () => {
    const board = JSON.parse(await read('docker/grafana-dashboard.json')) as {
      uid: string;
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    };
    const m = new CascadeMetrics({ processMetrics: true, queues: () => [], scheduleSuccesses: async () => ({}) });
    m.onBatch('little', stageStats({ images: 1, accepted: 1, jobMs: 1 }), { decode: 1 });
    m.onFiring('nightly', 'submitted');
    const exported = new Set<string>();
    for (const metric of await m.registry.getMetricsAsJSON()) {
      exported.add(metric.name);
      if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(`${metric.name}${suffix}`);
    }
    const queried = board.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/\b(cascade|process|nodejs)_[a-z0-9_]+/g) ?? []));
    expect(queried.length).toBeGreaterThan(10);
    for (const name of new Set(queried)) expect(exported.has(name), name).toBe(true);
    expect(await read('docker/grafana-dashboard.json')).not.toMatch(/cascade_routed_fraction|cascade_process_|cascade_nodejs_/);
    expect(queried).toContain('cascade_schedule_last_success_timestamp_seconds');
  });

  it('grafana-dashboard.json: no query groups by pod alone, a label only Kubernetes scrapes carry', async () => {
    const board = JSON.parse(await read('docker/grafana-dashboard.json')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
    for (const { title, targets } of board.panels) {
      for (const { expr } of targets) {
        for (const [, labels] of expr.matchAll(/\bby\s*\(([^)]*)\)/g)) {
          const by = labels!.split(',').map((l) => l.trim());
          // Grouping by pod collapses every worker outside Kubernetes into one series; instance always exists.
          expect(by.includes('pod') && !by.includes('instance'), `${title}: ${expr}`).toBe(false);
        }
      }
    }
  });
});
