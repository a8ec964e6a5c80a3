/**
 * docker/k8s: a kustomize base and cpu/gpu overlays. kubectl and kustomize cannot run here, so
 * this test assembles each overlay the way kustomize would for the few features the files use
 * (resources, namespace, strategic-merge patches, images) and refuses any other kustomization
 * field, so the assembly cannot silently differ. Every object is validated against the
 * Kubernetes schemas (the kubernetes-models package: apps/v1, v1, policy/v1); KEDA's and the
 * Prometheus Operator's CRDs ship no schema there, so ScaledObject, TriggerAuthentication,
 * PodMonitor and PrometheusRule are checked against zod schemas of the CRD fields used. kubernetes-models ignores
 * unknown fields, so the fields that matter (security, probes, GPU placement) are asserted one
 * by one below.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, ServiceAccount } from 'kubernetes-models/v1';
import { parse, parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { validateRoles } from '../../cli/commands/worker.js';
import { loadConfig } from '../../config/load-config.js';
import { loadWorkerConfig } from '../../config/worker-config.js';
import { stageQueueName } from '../../queue/jobs.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const K8S = join(ROOT, 'docker', 'k8s');
const OVERLAYS = ['cpu', 'gpu'] as const;

// Manifests are free-form YAML until validated.
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: any; data?: any };

/** The kustomization fields this assembly implements; any other is refused. */
const Kustomization = z
  .object({
    apiVersion: z.literal('kustomize.config.k8s.io/v1beta1'),
    kind: z.literal('Kustomization'),
    namespace: z.string().optional(),
    resources: z.array(z.string()),
    patches: z.array(z.object({ path: z.string() }).strict()).optional(),
    images: z
      .array(z.object({ name: z.string(), newName: z.string().optional(), newTag: z.string().optional(), digest: z.string().optional() }).strict())
      .optional(),
  })
  .strict();

/** Kinds with a Kubernetes-published schema: kustomize merges their lists by merge key. */
const BUILT_IN = new Set(['Deployment', 'ConfigMap', 'ServiceAccount', 'PodDisruptionBudget']);

/**
 * A strategic merge patch as kustomize applies it for the fields used here: maps merge, lists of
 * named objects (containers, volumes, env) merge by name on built-in kinds, other lists and
 * scalars are replaced; CRDs get a JSON merge patch (lists replaced).
 */
function merge(target: unknown, patch: unknown, builtIn: boolean): unknown {
  if (Array.isArray(patch)) {
    const named = (l: unknown[]) => l.every((x) => typeof x === 'object' && x !== null && 'name' in x);
    if (!builtIn || !Array.isArray(target) || !named(patch) || !named(target)) return patch;
    const out = [...target] as Array<{ name: string }>;
    for (const p of patch as Array<{ name: string }>) {
      const i = out.findIndex((t) => t.name === p.name);
      if (i >= 0) out[i] = merge(out[i], p, builtIn) as { name: string };
      else out.push(p);
    }
    return out;
  }
  if (typeof patch !== 'object' || patch === null || typeof target !== 'object' || target === null || Array.isArray(target)) return patch;
  const out: Record<string, unknown> = { ...(target as Record<string, unknown>) };
  for (const [k, v] of Object.entries(patch)) out[k] = v === null ? undefined : merge(out[k], v, builtIn);
  return out;
}

/** Every document of a YAML file. */
async function documents(file: string): Promise<Obj[]> {
  return parseAllDocuments(await readFile(file, 'utf8')).map((d) => {
    expect(d.errors, file).toEqual([]);
    return d.toJS() as Obj;
  });
}

/** `kustomize build <dir>` for the features in Kustomization. */
async function build(dir: string): Promise<Obj[]> {
  const k = Kustomization.parse(parse(await readFile(join(dir, 'kustomization.yaml'), 'utf8')));
  let objs: Obj[] = [];
  for (const r of k.resources) {
    const path = resolve(dir, r);
    expect(existsSync(path), `${dir}: resource ${r}`).toBe(true);
    objs.push(...(statSync(path).isDirectory() ? await build(path) : await documents(path)));
  }
  for (const { path } of k.patches ?? []) {
    for (const patch of await documents(resolve(dir, path))) {
      const i = objs.findIndex((o) => o.kind === patch.kind && o.metadata.name === patch.metadata.name);
      expect(i, `${path} patches ${patch.kind}/${patch.metadata.name}, which the resources lack`).toBeGreaterThanOrEqual(0);
      objs[i] = merge(objs[i], patch, BUILT_IN.has(patch.kind)) as Obj;
    }
  }
  for (const img of k.images ?? []) {
    let used = false;
    for (const c of objs.flatMap(containers)) {
      const [name, tag] = splitImage(c.image);
      if (name !== img.name) continue;
      used = true;
      c.image = `${img.newName ?? name}${img.newTag ? `:${img.newTag}` : tag ? `:${tag}` : ''}${img.digest ? `@${img.digest}` : ''}`;
    }
    expect(used, `${dir}: images entry ${img.name} matches no container`).toBe(true);
  }
  if (k.namespace) objs = objs.map((o) => ({ ...o, metadata: { ...o.metadata, namespace: k.namespace } }));
  return objs;
}

/** The containers of a Deployment (none for other kinds). */
function containers(o: Obj): Array<{ name: string; image: string; args: string[]; [k: string]: any }> {
  return o.kind === 'Deployment' ? o.spec.template.spec.containers : [];
}

/** [name, tag] of an image reference (digest dropped). */
function splitImage(image: string): [string, string | undefined] {
  const ref = image.split('@')[0]!;
  const colon = ref.lastIndexOf(':');
  return colon > ref.lastIndexOf('/') ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, undefined];
}

const Labels = z.record(z.string(), z.string());
const Meta = z.object({ name: z.string().min(1), namespace: z.string().min(1), labels: Labels.optional() }).strict();
/** KEDA v2 ScaledObject, the fields used (keda.sh/v1alpha1 CRD). */
const ScaledObject = z
  .object({
    apiVersion: z.literal('keda.sh/v1alpha1'),
    kind: z.literal('ScaledObject'),
    metadata: Meta,
    spec: z
      .object({
        scaleTargetRef: z.object({ name: z.string() }).strict(),
        minReplicaCount: z.number().int().min(0),
        maxReplicaCount: z.number().int().min(1),
        pollingInterval: z.number().int().positive(),
        cooldownPeriod: z.number().int().positive().optional(),
        advanced: z
          .object({
            horizontalPodAutoscalerConfig: z
              .object({
                behavior: z
                  .object({
                    scaleDown: z.object({
                      stabilizationWindowSeconds: z.number().int().min(0).max(3600),
                      policies: z.array(
                        z
                          .object({ type: z.enum(['Pods', 'Percent']), value: z.number().int().positive(), periodSeconds: z.number().int().min(1).max(1800) })
                          .strict(),
                      ),
                    }),
                    scaleUp: z
                      .object({
                        stabilizationWindowSeconds: z.number().int().min(0).max(3600),
                        policies: z.array(
                          z
                            .object({ type: z.enum(['Pods', 'Percent']), value: z.number().int().positive(), periodSeconds: z.number().int().min(1).max(1800) })
                            .strict(),
                        ),
                      })
                      .optional(),
                  })
                  .strict(),
              })
              .strict(),
          })
          .strict(),
        triggers: z.array(
          z
            .object({
              type: z.literal('redis'),
              // KEDA's redis scaler reads its metadata as strings.
              metadata: z
                .object({ address: z.string(), listName: z.string(), listLength: z.string(), activationListLength: z.string(), databaseIndex: z.string() })
                .strict(),
              authenticationRef: z.object({ name: z.string() }).strict(),
            })
            .strict(),
        ),
      })
      .strict(),
  })
  .strict();
const TriggerAuthentication = z
  .object({
    apiVersion: z.literal('keda.sh/v1alpha1'),
    kind: z.literal('TriggerAuthentication'),
    metadata: Meta,
    spec: z.object({ secretTargetRef: z.array(z.object({ parameter: z.string(), name: z.string(), key: z.string() }).strict()) }).strict(),
  })
  .strict();
/** Prometheus Operator PodMonitor (monitoring.coreos.com/v1), the fields used. */
const PodMonitor = z
  .object({
    apiVersion: z.literal('monitoring.coreos.com/v1'),
    kind: z.literal('PodMonitor'),
    metadata: Meta,
    spec: z
      .object({
        selector: z.object({ matchLabels: Labels }).strict(),
        podMetricsEndpoints: z.array(
          z
            .object({
              port: z.string(),
              path: z.string(),
              interval: z.string().regex(/^\d+[smh]$/),
              scrapeTimeout: z.string().regex(/^\d+[smh]$/),
            })
            .strict(),
        ),
      })
      .strict(),
  })
  .strict();

/** Prometheus Operator PrometheusRule (monitoring.coreos.com/v1), the fields used; prometheus-rules.test.ts runs promtool on its groups. */
const PrometheusRule = z
  .object({
    apiVersion: z.literal('monitoring.coreos.com/v1'),
    kind: z.literal('PrometheusRule'),
    metadata: Meta,
    spec: z
      .object({
        groups: z
          .array(
            z
              .object({
                name: z.string().min(1),
                rules: z.array(
                  z.union([
                    z.object({ record: z.string().min(1), expr: z.string().min(1) }).strict(),
                    z
                      .object({
                        alert: z.string().min(1),
                        expr: z.string().min(1),
                        for: z
                          .string()
                          .regex(/^\d+[smhd]$/)
                          .optional(),
                        labels: Labels,
                        annotations: Labels,
                      })
                      .strict(),
                  ]),
                ),
              })
              .strict(),
          )
          .min(1),
      })
      .strict(),
  })
  .strict();

/** Validate one object against its kind's schema; throws naming the problem. */
function validate(o: Obj): void {
  const models: Record<string, (o: Obj) => { validate(): void }> = {
    Deployment: (x) => new Deployment(x as never),
    ConfigMap: (x) => new ConfigMap(x as never),
    ServiceAccount: (x) => new ServiceAccount(x as never),
    PodDisruptionBudget: (x) => new PodDisruptionBudget(x as never),
  };
  const crds: Record<string, z.ZodType> = { ScaledObject, TriggerAuthentication, PodMonitor, PrometheusRule };
  if (models[o.kind]) models[o.kind]!(o).validate();
  else if (crds[o.kind]) crds[o.kind]!.parse(o);
  else throw new Error(`no schema for kind ${o.kind}`);
}

const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) => Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('docker/k8s kustomize overlays', () => {
  for (const overlay of OVERLAYS) {
    describe(overlay, async () => {
      const objs = await build(join(K8S, 'overlays', overlay));
      const byKind = (kind: string) => objs.filter((o) => o.kind === kind);
      const deployments = new Map(byKind('Deployment').map((d) => [d.metadata.name, d]));

      it('every object validates against its schema, in namespace cascade, names unique per kind', () => {
        expect(objs.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
          [
            'ConfigMap/cascade-config',
            'Deployment/cascade-big',
            'Deployment/cascade-little',
            'Deployment/cascade-ops',
            'PodDisruptionBudget/cascade-big',
            'PodDisruptionBudget/cascade-little',
            'PodDisruptionBudget/cascade-ops',
            'PodMonitor/cascade-workers',
            'PrometheusRule/cascade',
            'ScaledObject/cascade-big',
            'ScaledObject/cascade-little',
            'ServiceAccount/cascade-worker',
            'TriggerAuthentication/cascade-redis',
          ].sort(),
        );
        for (const o of objs) {
          expect(() => validate(o), `${o.kind}/${o.metadata.name}`).not.toThrow();
          expect(o.metadata.namespace).toBe('cascade');
        }
      });

      it('workers: real cascade commands, config from the ConfigMap, pinned images', async () => {
        const config = byKind('ConfigMap')[0]!;
        const dir = await mkdtemp(join(tmpdir(), 'cascade-k8s-'));
        try {
          for (const d of deployments.values()) {
            const [c] = containers(d);
            expect(containers(d)).toHaveLength(1);
            expect(c!.args[0]).toBe('worker');
            const roles = c!.args.slice(1, c!.args.indexOf('--config'));
            expect(validateRoles(roles)).toEqual(roles);
            // --config names a key of the ConfigMap mounted at /etc/cascade; it loads as a worker config with nothing ignored.
            const file = c!.args[c!.args.indexOf('--config') + 1]!;
            expect(dirname(file)).toBe('/etc/cascade');
            const mount = c!.volumeMounts.find((m: { mountPath: string }) => m.mountPath === '/etc/cascade');
            const volume = d.spec.template.spec.volumes.find((v: { name: string }) => v.name === mount.name);
            expect(volume.configMap.name).toBe(config.metadata.name);
            const body = config.data[file.slice('/etc/cascade/'.length)];
            expect(body, `${d.metadata.name}: ${file}`).toBeTypeOf('string');
            await writeFile(join(dir, 'w.yaml'), body);
            const loaded = await loadWorkerConfig({ file: join(dir, 'w.yaml'), env: {} });
            expect(loaded.ignored).toEqual([]);
            // Models from S3 go to the cache volume, by sha256.
            expect(c!.volumeMounts.some((m: { mountPath: string }) => loaded.config.modelDir?.startsWith(`${m.mountPath}/`))).toBe(true);
            if (d.metadata.name === 'cascade-big' && overlay === 'gpu') expect(loaded.config.executionProviders[0]).toBe('cuda');
            else expect(loaded.config.executionProviders).toEqual(['cpu']);
            // The metrics port serves the probes (--metrics-port).
            expect(c!.ports.find((p: { name: string }) => p.name === 'metrics').containerPort).toBe(Number(c!.args[c!.args.indexOf('--metrics-port') + 1]));
            // Pinned: a version tag (or a digest), never latest or none.
            const [, tag] = splitImage(c!.image);
            expect(c!.image.includes('@sha256:') || (tag !== undefined && tag !== 'latest'), c!.image).toBe(true);
          }
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      });

      it('Pod Security "restricted": non-root as the image user, no escalation, no capabilities, RuntimeDefault seccomp, read-only root with emptyDir for writes', async () => {
        const uidOf = async (dockerfile: string) => {
          const user = [...(await readFile(join(ROOT, 'docker', dockerfile), 'utf8')).matchAll(/^USER (\S+)/gm)].at(-1)![1];
          return Number(user!.split(':')[0]);
        };
        for (const d of deployments.values()) {
          const pod = d.spec.template.spec;
          expect(pod.securityContext.runAsNonRoot).toBe(true);
          expect(pod.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
          expect(pod.hostNetwork ?? pod.hostPID ?? pod.hostIPC).toBeUndefined();
          const gpuImage = splitImage(containers(d)[0]!.image)[0].endsWith('-gpu');
          expect(pod.securityContext.runAsUser).toBe(await uidOf(gpuImage ? 'Dockerfile.gpu' : 'Dockerfile'));
          for (const c of containers(d)) {
            expect(c.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
            // Writable paths are emptyDirs; no hostPath, no PVC.
            for (const m of c.volumeMounts.filter((x: { readOnly?: boolean }) => !x.readOnly)) {
              const v = pod.volumes.find((x: { name: string }) => x.name === m.name);
              expect(Object.keys(v).sort(), m.mountPath).toEqual(['emptyDir', 'name']);
            }
            expect(c.volumeMounts.map((m: { mountPath: string }) => m.mountPath)).toContain('/tmp');
          }
          expect(pod.volumes.every((v: object) => !('hostPath' in v) && !('persistentVolumeClaim' in v))).toBe(true);
          expect(pod.automountServiceAccountToken).toBe(false);
          expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(60);
        }
      });

      it('probes: startup and readiness on /readyz, liveness on /healthz, the startup probe sized for model loading', () => {
        for (const d of deployments.values()) {
          const [c] = containers(d);
          expect(c!.startupProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
          expect(c!.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
          expect(c!.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
          // At least 10 minutes for the models of the runs in flight before the first liveness check.
          expect(c!.startupProbe.periodSeconds * c!.startupProbe.failureThreshold).toBeGreaterThanOrEqual(600);
        }
      });

      it('GPU placement only in the gpu overlay: the big stage asks for one GPU, tolerates the GPU taint, selects GPU nodes', () => {
        for (const d of deployments.values()) {
          const pod = d.spec.template.spec;
          const gpu = containers(d)[0]!.resources.limits['nvidia.com/gpu'];
          if (overlay === 'gpu' && d.metadata.name === 'cascade-big') {
            expect(gpu).toBe(1);
            expect(pod.tolerations).toEqual([{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
            expect(pod.nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
            expect(containers(d)[0]!.image).toBe('ghcr.io/example/cascade-gpu:0.1.0');
            // Merged, not replaced: the base's memory limit and mounts stay.
            expect(containers(d)[0]!.resources.limits.memory).toBe('8Gi');
            expect(containers(d)[0]!.volumeMounts).toHaveLength(3);
            // env merged by name: the base's REDIS_URL stays, CUDA's cache moves off the read-only root.
            expect(containers(d)[0]!.env.map((e: { name: string }) => e.name)).toEqual(['REDIS_URL', 'AWS_REGION', 'CUDA_CACHE_PATH']);
            expect(containers(d)[0]!.env.at(-1).value).toMatch(/^\/cache\//);
          } else {
            expect(gpu).toBeUndefined();
            expect(pod.tolerations).toBeUndefined();
            expect(pod.nodeSelector).toBeUndefined();
          }
        }
      });

      it('a PDB per Deployment, a PodMonitor on the metrics port of every worker', () => {
        const pdbs = byKind('PodDisruptionBudget');
        for (const d of deployments.values()) {
          const labels = d.spec.template.metadata.labels;
          expect(d.spec.selector.matchLabels).toEqual(labels);
          expect(pdbs.filter((p) => matches(p.spec.selector.matchLabels, labels)).map((p) => p.spec.maxUnavailable)).toEqual([1]);
        }
        const [monitor] = byKind('PodMonitor');
        for (const d of deployments.values()) {
          expect(matches(monitor!.spec.selector.matchLabels, d.spec.template.metadata.labels)).toBe(true);
          for (const e of monitor!.spec.podMetricsEndpoints) expect(containers(d)[0]!.ports.map((p: { name: string }) => p.name)).toContain(e.port);
        }
      });

      it('PrometheusRule: its worker-down alerts select the PodMonitor’s job, its stage-queue matchers the stage queues', () => {
        const [monitor] = byKind('PodMonitor');
        const [rule] = byKind('PrometheusRule');
        // The Prometheus Operator names a PodMonitor's scrape job <namespace>/<name>.
        const job = `${monitor!.metadata.namespace}/${monitor!.metadata.name}`;
        const exprs = rule!.spec.groups.flatMap((g: { rules: Array<{ alert?: string; expr: string }> }) => g.rules);
        for (const name of ['CascadeWorkerDown', 'CascadeNoWorkerUp']) {
          const expr = exprs.find((r: { alert?: string }) => r.alert === name)!.expr;
          const re = /up\{job=~"([^"]+)"\}/.exec(expr)![1]!;
          expect(new RegExp(`^(?:${re})$`).test(job), `${name}: ${expr} vs job ${job}`).toBe(true);
        }
        const stuck = exprs.find((r: { alert?: string }) => r.alert === 'CascadeRunStuck')!.expr;
        const queueRe = /queue=~"([^"]+)"/.exec(stuck)![1]!;
        for (const d of deployments.values()) {
          const stage = containers(d)[0]!.args[1]!;
          if (d.metadata.name !== 'cascade-ops') expect(new RegExp(`^(?:${queueRe})$`).test(stageQueueName(stage)), stage).toBe(true);
        }
      });

      it('KEDA: each stage Deployment scales on its queue’s wait list, scale-down paced by HPA behaviour (cooldownPeriod is inert at min 1)', async () => {
        const prefix = (await loadConfig({ file: join(ROOT, 'docker', 'cascade.yaml'), env: { CASCADE_ASSETS: '/assets' } })).prefix;
        const scaled = byKind('ScaledObject');
        expect(scaled.map((s) => s.spec.scaleTargetRef.name).sort()).toEqual(['cascade-big', 'cascade-little']);
        for (const so of scaled) {
          const target = deployments.get(so.spec.scaleTargetRef.name)!;
          const stage = containers(target)[0]!.args[1]!;
          const [trigger] = so.spec.triggers;
          expect(trigger.metadata.listName).toBe(`${prefix}:${stageQueueName(stage)}:wait`);
          expect(Number(trigger.metadata.listLength)).toBeGreaterThan(0);
          expect(byKind('TriggerAuthentication').map((t) => t.metadata.name)).toContain(trigger.authenticationRef.name);
          expect(so.spec.minReplicaCount).toBe(1);
          expect(so.spec.cooldownPeriod).toBeUndefined();
          expect(so.spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.policies.length).toBeGreaterThan(0);
        }
        expect(scaled.find((s) => s.metadata.name === 'cascade-big')!.spec.maxReplicaCount).toBe(overlay === 'gpu' ? 4 : 8);
      });
    });
  }

  it('the assembly refuses what it does not implement and finds broken references', async () => {
    expect(() =>
      Kustomization.parse({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: [], commonLabels: { a: 'b' } }),
    ).toThrow();
    const dir = await mkdtemp(join(tmpdir(), 'cascade-kustomize-'));
    try {
      await writeFile(join(dir, 'kustomization.yaml'), 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [missing.yaml]\n');
      await expect(build(dir)).rejects.toThrow(/resource missing\.yaml/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // A misspelt field of a built-in kind fails its schema.
    expect(() =>
      validate({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'x' },
        spec: {
          selector: { matchLabels: {} },
          template: { spec: { containers: [{ name: 'w', image: 'i', livenessProbe: { httpGet: { path: '/healthz' } } }] } },
        },
      }),
    ).toThrow(/port/);
    expect(merge({ a: [{ name: 'w', x: 1, y: 2 }], l: [1, 2] }, { a: [{ name: 'w', x: 3 }], l: [3] }, true)).toEqual({
      a: [{ name: 'w', x: 3, y: 2 }],
      l: [3],
    });
  });
});
