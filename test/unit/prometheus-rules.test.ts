/**
 * The shipped Prometheus rules: docker/prometheus/cascade-rules.yml (plain Prometheus) and the
 * PrometheusRule in the kustomize base carry the same groups; promtool (Debian's `prometheus`
 * package; .ci/run installs it) checks both and runs the rule unit tests in
 * docker/prometheus/cascade-rules.test.yml, in which every alert fires on a synthetic series.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { promtool } from '../helpers/promtool.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const RULES = join(ROOT, 'docker', 'prometheus', 'cascade-rules.yml');
const RULE_TESTS = join(ROOT, 'docker', 'prometheus', 'cascade-rules.test.yml');
const PROMETHEUS_RULE = join(ROOT, 'docker', 'k8s', 'base', 'prometheusrule.yaml');

const Rule = z.union([
  z.object({ record: z.string(), expr: z.string() }).strict(),
  z
    .object({
      alert: z.string(),
      expr: z.string(),
      for: z.string().optional(),
      labels: z.object({ severity: z.enum(['warning', 'critical']) }).strict(),
      annotations: z.object({ summary: z.string(), description: z.string() }).strict(),
    })
    .strict(),
]);
const RuleGroups = z.object({ groups: z.array(z.object({ name: z.string(), rules: z.array(Rule) }).strict()) }).strict();
const RuleTests = z.object({
  tests: z.array(
    z.object({
      name: z.string(),
      input_series: z.array(z.object({ series: z.string(), values: z.string() })),
      alert_rule_test: z.array(z.object({ alertname: z.string(), eval_time: z.string(), exp_alerts: z.array(z.unknown()) })).optional(),
    }),
  ),
});

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cascade-rules-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('Prometheus rules', () => {
  it('the PrometheusRule carries exactly the plain rules file’s groups', async () => {
    const plain = RuleGroups.parse(parse(await readFile(RULES, 'utf8')));
    const k8s = parse(await readFile(PROMETHEUS_RULE, 'utf8'));
    expect(k8s.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(k8s.kind).toBe('PrometheusRule');
    expect(k8s.spec).toEqual(plain);
  });

  it('promtool check rules passes on both files', async () => {
    const spec = join(dir, 'prometheusrule-spec.yml');
    await writeFile(spec, stringify(parse(await readFile(PROMETHEUS_RULE, 'utf8')).spec));
    for (const file of [RULES, spec]) {
      const { code, output } = await promtool(['check', 'rules', file]);
      expect([code, output], file).toEqual([0, expect.stringMatching(/SUCCESS: 13 rules found/)]);
    }
  });

  it('the alerts we promise exist; the missed-schedule one uses absent() so it fires with no series', async () => {
    const rules = RuleGroups.parse(parse(await readFile(RULES, 'utf8'))).groups.flatMap((g) => g.rules);
    const alerts = new Map(rules.flatMap((r) => ('alert' in r ? [[r.alert, r.expr] as const] : [])));
    expect([...alerts.keys()].sort()).toEqual(
      [
        'CascadeErrorRatioHigh',
        'CascadeJobWaitingTooLong',
        'CascadeNoWorkerUp',
        'CascadeRedisUnreadable',
        'CascadeRunStuck',
        'CascadeScheduledRunMissed',
        'CascadeScheduledRunsAbsent',
        'CascadeWorkerDown',
      ].sort(),
    );
    expect(alerts.get('CascadeScheduledRunsAbsent')).toMatch(/^absent\(cascade_schedule_last_success_timestamp_seconds\)$/);
  });

  it('promtool test rules: every alert fires in a unit test, the absent() one in a test without its series', async () => {
    const { code, output } = await promtool(['test', 'rules', RULE_TESTS]);
    expect([code, output]).toEqual([0, expect.stringMatching(/SUCCESS/)]);
    const rules = RuleGroups.parse(parse(await readFile(RULES, 'utf8'))).groups.flatMap((g) => g.rules);
    const { tests } = RuleTests.parse(parse(await readFile(RULE_TESTS, 'utf8')));
    for (const alert of rules.flatMap((r) => ('alert' in r ? [r.alert] : []))) {
      const firing = tests.filter((t) => t.alert_rule_test?.some((a) => a.alertname === alert && a.exp_alerts.length > 0));
      expect(firing.length, `${alert} fires in no test`).toBeGreaterThan(0);
      if (alert === 'CascadeScheduledRunsAbsent')
        for (const t of firing) expect(t.input_series.some((s) => s.series.startsWith('cascade_schedule_last_success_timestamp_seconds'))).toBe(false);
    }
  });

  it('promtool test rules fails when an alert is removed (the unit tests are not vacuous)', async () => {
    const rules = parse(await readFile(RULES, 'utf8')) as z.infer<typeof RuleGroups>;
    for (const g of rules.groups) g.rules = g.rules.filter((r) => !('alert' in r) || r.alert !== 'CascadeScheduledRunsAbsent');
    await writeFile(join(dir, 'cascade-rules.yml'), stringify(rules));
    await writeFile(join(dir, 'cascade-rules.test.yml'), await readFile(RULE_TESTS, 'utf8'));
    const { code, output } = await promtool(['test', 'rules', join(dir, 'cascade-rules.test.yml')]);
    expect(code).not.toBe(0);
    expect(output).toMatch(/CascadeScheduledRunsAbsent/);
  });
});

describe('Grafana dashboard queries under promtool', () => {
  it('every query parses, and the per-process panels name each worker by pod on Kubernetes and by instance elsewhere', async () => {
    const board = JSON.parse(await readFile(join(ROOT, 'docker', 'grafana-dashboard.json'), 'utf8')) as { panels: Array<{ targets: Array<{ expr: string }> }> };
    const exprs = board.panels.flatMap((p) => p.targets.map((t) => t.expr.replaceAll('$job', '.*')));
    const perProcess = exprs.filter((e) => /\b(process|nodejs)_/.test(e));
    expect(perProcess.length).toBeGreaterThanOrEqual(3);
    // Two workers: one scraped through the PodMonitor (pod label), one by a plain scrape config (none).
    const input = (metric: string) => [
      { series: `${metric}{job="cascade/cascade-workers", instance="10.0.0.7:9464", pod="cascade-little-7d9f"}`, values: '0+1x20' },
      { series: `${metric}{job="cascade", instance="little-1:9464"}`, values: '0+2x20' },
    ];
    const tests = {
      rule_files: [],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds'].flatMap(input),
          promql_expr_test: perProcess.map((expr) => ({
            expr: `count by (worker) (${expr})`,
            eval_time: '10m',
            exp_samples: [
              { labels: '{worker="cascade-little-7d9f"}', value: 1 },
              { labels: '{worker="little-1:9464"}', value: 1 },
            ],
          })),
        },
        // Every other query parses and evaluates (on no data).
        {
          interval: '1m',
          input_series: [],
          promql_expr_test: exprs.filter((e) => !perProcess.includes(e)).map((expr) => ({ expr, eval_time: '1m', exp_samples: [] })),
        },
      ],
    };
    const file = join(dir, 'dashboard.test.yml');
    await writeFile(file, stringify(tests));
    const { code, output } = await promtool(['test', 'rules', file]);
    expect([code, output]).toEqual([0, expect.stringMatching(/SUCCESS/)]);
  });
});
