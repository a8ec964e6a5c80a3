/**
 * The conformance probe of each sample model on this machine, as JSON, so probes taken on
 * different CPUs (or under `qemu-x86_64 -cpu Haswell`) can be compared, and the default
 * probeTolerance chosen from measurements: `node --import tsx bench/probe.ts [--numerics exact|native] [--out f.json]`;
 * `--compare a.json b.json` prints the largest difference per model.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModelSpec } from '../config/load-config.js';
import { Numerics } from '../config/schema.js';
import { currentPlatform, describePlatform } from '../pipeline/inference/platform.js';
import { planModel } from '../pipeline/models/plan-model.js';
import { compareProbe, type Probe } from '../pipeline/models/probe.js';
import { testModelCache } from '../test/helpers/run-spec.js';
import { findAssets, REPO_ROOT } from './assets.js';

const { values, positionals } = parseArgs({
  options: {
    numerics: { type: 'string', default: 'exact' },
    out: { type: 'string' },
    compare: { type: 'boolean', default: false },
    models: { type: 'string', default: 'squeezenet,shufflenet,mobilenetv2,ensemble' },
  },
  allowPositionals: true,
});

if (values.compare) {
  const [a, b] = await Promise.all(positionals.map(async (f) => JSON.parse(await readFile(f, 'utf8')) as Record<string, Probe>));
  for (const [model, probe] of Object.entries(a!)) {
    const other = b![model];
    if (!other) continue;
    const c = compareProbe(probe, other, 0);
    console.log(
      `${model}: max |Δp| ${c.maxDiff.toExponential(2)}, top-1 changed on [${c.top1Changed.join(', ')}] (${describePlatform(probe.platform)} vs ${describePlatform(other.platform)})`,
    );
  }
} else {
  const assets = findAssets();
  if ('missing' in assets) {
    console.log(`probe: skipped, ${assets.missing}`);
  } else {
    const numerics = Numerics.parse(values.numerics);
    const cache = testModelCache(1);
    const probes: Record<string, Probe> = {};
    for (const name of values.models!.split(',')) {
      const spec = await loadModelSpec(join(REPO_ROOT, 'config/models', `${name}.yaml`));
      probes[name] = (await planModel(name, spec, numerics, cache)).pin.probe;
      console.log(`${name}: top-1 per probe image ${probes[name]!.outputs.map((o) => `${o.image}=${o.top[0]![0]}@${o.top[0]![1].toFixed(4)}`).join(' ')}`);
    }
    await cache.close();
    console.log(`platform: ${describePlatform(currentPlatform())}, numerics ${numerics}`);
    if (values.out) await writeFile(values.out, JSON.stringify(probes, null, 1));
  }
}
