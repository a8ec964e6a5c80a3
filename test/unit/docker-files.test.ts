/**
 * The container files cannot be built or run here (no Docker): check what can be checked —
 * they parse, every file they copy exists, their commands are real `cascade` commands with
 * valid roles, the configs they bake in load, the environment names are the ones the config
 * loader reads, and KEDA watches the queue's wait list (that BullMQ keeps waiting jobs there is
 * checked against a real redis-server in integration/keda-wait-list.test.ts).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { validateRoles } from '../../cli/commands/worker.js';
import { buildProgram } from '../../cli/main.js';
import { loadConfig } from '../../config/load-config.js';
import { loadWorkerConfig } from '../../config/worker-config.js';
import { stageQueueName } from '../../queue/jobs.js';

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

  it('k8s: a Deployment per stage plus ops, each scaled stage has a KEDA redis ScaledObject on its queue’s wait list', async () => {
    const docs = [...parseAllDocuments(await read('docker/k8s/workers.yaml')), ...parseAllDocuments(await read('docker/k8s/keda.yaml'))].map((d) => {
      expect(d.errors).toEqual([]);
      return d.toJS() as { kind: string; metadata: { name: string }; spec: Record<string, any> };
    });
    const deployments = new Map(docs.filter((d) => d.kind === 'Deployment').map((d) => [d.metadata.name, d]));
    const args = (name: string) => deployments.get(name)!.spec.template.spec.containers[0].args as string[];
    expect(args('cascade-little').slice(0, 2)).toEqual(['worker', 'little']);
    expect(args('cascade-big').slice(0, 2)).toEqual(['worker', 'big']);
    expect(args('cascade-ops').slice(0, 3)).toEqual(['worker', 'merge', 'scheduler']);
    for (const d of deployments.values()) {
      checkCascadeArgs(d.spec.template.spec.containers[0].args);
      expect(d.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(60);
      expect(d.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
      // The liveness probe hits the endpoint `--metrics-port` serves (workers/metrics.ts).
      const container = d.spec.template.spec.containers[0];
      expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
      expect(container.args).toContain('--metrics-port');
      expect(container.ports.find((p: { name: string }) => p.name === 'metrics').containerPort).toBe(
        Number(container.args[container.args.indexOf('--metrics-port') + 1]),
      );
    }
    const prefix = (await loadConfig({ file: join(DOCKER, 'cascade.yaml'), env: { CASCADE_ASSETS: '/assets' } })).prefix;
    const scaled = docs.filter((d) => d.kind === 'ScaledObject');
    expect(scaled.map((d) => d.spec.scaleTargetRef.name).sort()).toEqual(['cascade-big', 'cascade-little']);
    for (const so of scaled) {
      expect(deployments.has(so.spec.scaleTargetRef.name)).toBe(true);
      const stage = so.spec.scaleTargetRef.name.replace('cascade-', '');
      const [trigger] = so.spec.triggers;
      expect(trigger.type).toBe('redis');
      expect(trigger.metadata.listName).toBe(`${prefix}:${stageQueueName(stage)}:wait`);
      expect(Number(trigger.metadata.listLength)).toBeGreaterThan(0);
      expect(docs.some((d) => d.kind === 'TriggerAuthentication' && d.metadata.name === trigger.authenticationRef.name)).toBe(true);
    }
  });
});
