// The big stage as Cascade runs it, per execution provider and batch size: the project's own
// InferencePool (a worker thread holding the session, the batch transferred to it, logits →
// probabilities) fed with real photos preprocessed by the project's preprocessImage. Per model:
//   - every photo once through each provider: images/s on photos, and the top-1 agreement of
//     each provider with the first (cpu) on the same photos, with the probability differences;
//   - img/s per batch size (stacked photo tensors, a fresh input per call as the pipeline makes);
//   - which provider each node group ran on (onnxruntime's profiler), for the non-CPU providers.
// Writes the JSON after every step, so a timeout still leaves what was measured.
//
// Usage: node gpu/bench.mjs --models name=path[,name=path…] --images <dir> --out <file.json>
//          [--eps cpu,webgpu] [--batches 1,8,32] [--seconds 2] [--limit 300] [--deadline <epoch s>]
//        node gpu/bench.mjs --probe [--ep webgpu]    (can this provider open a session and run here?)
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { join } from 'node:path';

const argv = process.argv.slice(2);
const opt = (k, d) => {
  const i = argv.indexOf(k);
  return i < 0 ? d : argv[i + 1];
};

if (argv.includes('--probe')) {
  // A session of a one-node model (Relu, which every provider has) on one provider: the quickest
  // way to learn whether the provider finds a device here. ORT's error says why not.
  const ort = (await import('onnxruntime-node')).default;
  const { encodeModel } = await import('../dist/pipeline/onnx/onnx-proto.js');
  const info = (name) => ({ name, type: { tensor_type: { elem_type: 1, shape: { dim: [1, 3, 8, 8].map((d) => ({ dim_value: d })) } } } });
  const tiny = encodeModel({
    ir_version: 8,
    opset_import: [{ domain: '', version: 13 }],
    graph: { name: 'probe', node: [{ op_type: 'Relu', name: 'relu', input: ['x'], output: ['y'] }], input: [info('x')], output: [info('y')] },
  });
  const ep = opt('--ep', 'webgpu');
  const t = performance.now();
  try {
    const s = await ort.InferenceSession.create(tiny, { executionProviders: [ep] });
    await s.run({ x: new ort.Tensor('float32', new Float32Array(192).fill(-1), [1, 3, 8, 8]) });
    await s.release();
    console.log(JSON.stringify({ ep, available: true, openS: +((performance.now() - t) / 1000).toFixed(2) }));
  } catch (err) {
    console.log(JSON.stringify({ ep, available: false, error: String(err?.message ?? err).split('\n')[0] }));
  }
  process.exit(0);
}

const { InferencePool } = await import('../dist/pipeline/inference/inference-pool.js');
const { preprocessImage } = await import('../dist/pipeline/image/preprocess.js');
const { PreprocessInput } = await import('../dist/config/schema.js');
const { topK } = await import('../dist/pipeline/routing.js');
// Absent in builds older than the node-placement module: the bench then reports no placement.
const { nodePlacement } = await import('../dist/pipeline/inference/node-placement.js').catch(() => ({}));

const models = (opt('--models', '') || '')
  .split(',')
  .filter(Boolean)
  .map((m) => {
    const i = m.indexOf('=');
    return { name: m.slice(0, i), path: m.slice(i + 1) };
  });
const eps = opt('--eps', 'cpu,webgpu').split(',');
const batches = opt('--batches', '1,8,32').split(',').map(Number);
const seconds = Number(opt('--seconds', '2'));
const limit = Number(opt('--limit', '300'));
// The first provider's pass over the photos stops after this long; the others run the same photos.
const photoSeconds = Number(opt('--photo-seconds', '10'));
const deadline = Number(opt('--deadline', String(Date.now() / 1000 + 3600)));
const out = opt('--out', 'big-bench.json');
const imageDir = opt('--images');
if (!imageDir || models.length === 0) {
  console.error('usage: node gpu/bench.mjs --models name=path[,…] --images <dir> --out <file.json>');
  process.exit(2);
}

const torch = PreprocessInput.parse('torch');
const files = readdirSync(imageDir)
  .filter((f) => /\.(jpe?g|png|webp)$/i.test(f))
  .sort()
  .slice(0, limit);
const report = {
  startedAt: new Date().toISOString(),
  host: hostname(),
  cores: availableParallelism(),
  eps,
  batches,
  secondsPerCell: seconds,
  photos: files.length,
  note: "imgPerS: through Cascade's InferencePool (thread hop, input transfer, logits→probabilities); sessionImgPerS: time inside session.run only",
  models: [],
  rows: [],
};
const save = () => writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
const timeLeft = () => deadline - Date.now() / 1000;
const log = (msg) => console.error(`bench: ${msg}`);
const r2 = (x) => Math.round(x * 100) / 100;

/** Preprocessed photos for one input shape, decoded 8 at a time. */
async function photoTensors(io) {
  const shape = { height: io.height, width: io.width, dtype: io.inputDtype };
  const tensors = new Array(files.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < files.length) {
        const i = next++;
        tensors[i] = await preprocessImage(readFileSync(join(imageDir, files[i])), torch, shape, { maxPixels: 1e8 });
      }
    }),
  );
  return tensors;
}

/** A fresh stacked input of `n` photos starting at `from` (cycling), as inferChunk builds one. */
function stack(tensors, from, n) {
  const per = tensors[0].length;
  const batch = tensors[0] instanceof Uint16Array ? new Uint16Array(n * per) : new Float32Array(n * per);
  for (let i = 0; i < n; i++) batch.set(tensors[(from + i) % tensors.length], i * per);
  return batch;
}

// The CPU rows of each model, so that a float16 model the CPU cannot run (no float16 kernels) is
// compared with its float32 twin (same weights: export_models.py exports both from one instance).
const cpuRows = new Map();
const twin = (name) => (name.endsWith('-fp16') ? `${name.slice(0, -5)}-fp32` : null);

for (const model of models) {
  if (timeLeft() < 15) {
    log(`${model.name}: skipped, out of time`);
    report.models.push({ name: model.name, skipped: 'out of time' });
    save();
    continue;
  }
  const entry = { name: model.name, path: model.path, providers: {}, agreement: {} };
  report.models.push(entry);
  let tensors = null;
  let reference = null;
  for (const ep of eps) {
    const res = { requested: ep };
    entry.providers[ep] = res;
    if (timeLeft() < 10) {
      res.skipped = 'out of time';
      save();
      continue;
    }
    let pool;
    const t0 = performance.now();
    try {
      pool = await InferencePool.open(model.path, {
        executionProviders: ep === 'cpu' ? ['cpu'] : [ep, 'cpu'],
        intraOpThreads: 0,
        threads: 1,
        output: 'logits',
        maxBatch: Math.max(...batches),
        graphOptimization: 'all',
        numerics: 'exact',
        accumulateMs: 0,
      });
    } catch (err) {
      res.error = String(err?.message ?? err).split('\n')[0];
      log(`${model.name} on ${ep}: ${res.error}`);
      save();
      continue;
    }
    res.openS = r2((performance.now() - t0) / 1000);
    res.provider = pool.provider;
    entry.io = pool.io;
    if (pool.provider !== ep) {
      res.error = `${ep} could not open a session here; onnxruntime fell back to ${pool.provider}`;
      log(`${model.name}: ${res.error}`);
      await pool.close();
      save();
      continue;
    }
    try {
      tensors ??= await photoTensors(pool.io);
      const fixed = pool.io.fixedBatch;
      // Every photo once, in calls of the largest batch: throughput on photos and the rows to compare.
      const step = fixed ?? Math.max(...batches);
      if (!reference && ep !== 'cpu' && cpuRows.has(twin(model.name))) reference = { ep: `cpu (${twin(model.name)})`, rows: cpuRows.get(twin(model.name)) };
      const rows = [];
      const count = reference ? Math.min(reference.rows.length, tensors.length) : tensors.length;
      let t = performance.now();
      let inside = 0;
      for (let i = 0; i < count; i += step) {
        const n = Math.min(step, count - i);
        const { probs, classes, ms } = await pool.infer(stack(tensors, i, n), n);
        inside += ms;
        for (let k = 0; k < n; k++) rows.push(probs.slice(k * classes, (k + 1) * classes));
        if (!reference && performance.now() - t > photoSeconds * 1000) break;
      }
      res.photos = {
        images: rows.length,
        batch: step,
        imgPerS: r2((rows.length * 1000) / (performance.now() - t)),
        sessionImgPerS: r2((rows.length * 1000) / inside),
      };
      if (ep === 'cpu') cpuRows.set(model.name, rows);
      if (!reference) reference = { ep, rows };
      else entry.agreement[ep] = compare(reference.rows, rows, reference.ep);
      save();
      // Timing per batch size.
      res.batches = [];
      let last = null;
      for (const b of fixed ? [fixed] : batches) {
        if (timeLeft() < 8) {
          res.batches.push({ batch: b, skipped: 'out of time' });
          break;
        }
        // A provider this slow (float16 on a CPU, say) would spend the whole budget on one cell.
        if (last && (last.msPerCall * b) / last.batch > 15_000) {
          res.batches.push({ batch: b, skipped: `too slow (~${Math.round((last.msPerCall * b) / last.batch / 1000)} s a call)` });
          continue;
        }
        // Warm-up: the first calls of a shape compile kernels/shaders on GPU providers.
        for (let w = 0; w < (ep === 'cpu' ? 1 : 2); w++) await pool.infer(stack(tensors, w * b, b), b);
        let calls = 0;
        inside = 0;
        t = performance.now();
        for (;;) {
          const { ms } = await pool.infer(stack(tensors, calls * b, b), b);
          inside += ms;
          calls++;
          const elapsed = performance.now() - t;
          if ((elapsed >= seconds * 1000 && calls >= 2) || elapsed >= seconds * 3000 || timeLeft() < 5) break;
        }
        const wall = performance.now() - t;
        const cell = { batch: b, calls, imgPerS: r2((calls * b * 1000) / wall), sessionImgPerS: r2((calls * b * 1000) / inside), msPerCall: r2(wall / calls) };
        res.batches.push(cell);
        last = cell;
        report.rows.push({ model: model.name, provider: ep, ...cell });
        log(`${model.name} ${ep} batch ${b}: ${cell.imgPerS} img/s (${cell.sessionImgPerS} in session.run)`);
        save();
      }
    } catch (err) {
      res.error = String(err?.message ?? err).split('\n')[0];
      log(`${model.name} on ${ep}: ${res.error}`);
    } finally {
      await pool.close();
    }
    if (ep !== 'cpu' && nodePlacement && timeLeft() > 10) {
      try {
        res.placement = await nodePlacement(model.path, { executionProviders: [ep, 'cpu'], graphOptimization: 'all', intraOpThreads: 0 });
      } catch (err) {
        res.placement = { error: String(err?.message ?? err).split('\n')[0] };
      }
    }
    save();
  }
}
report.finishedAt = new Date().toISOString();
save();
log(`wrote ${out}`);

/** Top-1 agreement of `rows` with `ref` on the same photos, and how far the probabilities moved. */
function compare(ref, rows, vs) {
  let agree = 0;
  let decisive = 0;
  let decisiveAgree = 0;
  let maxAbsDiff = 0;
  let sumAbsDiff = 0;
  let values = 0;
  const margins = [];
  const n = Math.min(ref.length, rows.length);
  for (let i = 0; i < n; i++) {
    const a = ref[i];
    const b = rows[i];
    let imageMax = 0;
    for (let k = 0; k < a.length; k++) {
      const d = Math.abs(a[k] - b[k]);
      imageMax = Math.max(imageMax, d);
      sumAbsDiff += d;
      values++;
    }
    maxAbsDiff = Math.max(maxAbsDiff, imageMax);
    const [r1, r2nd] = topK(a, 2);
    const same = topK(b, 1)[0] === r1;
    if (same) agree++;
    const margin = a[r1] - a[r2nd];
    margins.push(margin);
    // A top-1 that led by more than twice this image's largest difference cannot flip by rounding alone.
    if (margin > 2 * imageMax) {
      decisive++;
      if (same) decisiveAgree++;
    }
  }
  margins.sort((x, y) => x - y);
  return {
    vs,
    images: n,
    top1Agree: agree,
    top1AgreeRate: r4(agree / n),
    decisive,
    decisiveAgree,
    maxAbsDiff: +maxAbsDiff.toPrecision(3),
    meanAbsDiff: +(sumAbsDiff / values).toPrecision(3),
    medianTop1Margin: +(margins[margins.length >> 1] ?? 0).toPrecision(3),
  };
}

function r4(x) {
  return Math.round(x * 1e4) / 1e4;
}
