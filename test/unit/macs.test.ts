import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { countMacs } from '../../pipeline/onnx/macs.js';
import { decodeModel } from '../../pipeline/onnx/onnx-proto.js';
import { inferShapes } from '../../pipeline/onnx/onnx-shapes.js';
import { OnnxBuilder, type Dim } from '../helpers/onnx-builder.js';

const zeros = (n: number): number[] => new Array<number>(n).fill(0);
const prod = (xs: number[]): number => xs.reduce((a, b) => a * b, 1);

/** A one-input model whose output shape is declared unknown, so only inference can find it. */
function model(inputShape: Dim[], build: (b: OnnxBuilder) => OnnxBuilder, opset = 13): Uint8Array {
  const b = new OnnxBuilder({ opset }).input('x', 'float32', inputShape);
  return build(b).output('y', 'float32').build();
}

/** Runs the model in onnxruntime with batch 1 and returns the real output dims. */
async function ortOutputDims(bytes: Uint8Array, inputShape: number[]): Promise<readonly number[]> {
  const session = await ort.InferenceSession.create(bytes);
  const x = new ort.Tensor('float32', new Float32Array(prod(inputShape)).fill(0.5), inputShape);
  const out = await session.run({ x });
  await session.release();
  return out.y!.dims;
}

function inferredOutput(bytes: Uint8Array): number[] | undefined {
  const m = decodeModel(bytes);
  return inferShapes(m.graph!, m.opset_import![0]!.version!).shapes.get('y');
}

interface Case {
  name: string;
  input: Dim[];
  opset?: number;
  build: (b: OnnxBuilder) => OnnxBuilder;
  macs: number;
  outShape: number[];
}

const cases: Case[] = [
  {
    name: 'grouped Conv, stride 2, pad 1',
    input: ['N', 16, 32, 32],
    build: (b) =>
      b.initializer('w', 'float32', [32, 4, 3, 3], zeros(32 * 4 * 9)).node('Conv', ['x', 'w'], ['y'], { group: 4, strides: [2, 2], pads: [1, 1, 1, 1] }),
    macs: 32 * 16 * 16 * 4 * 3 * 3,
    outShape: [1, 32, 16, 16],
  },
  {
    name: 'Conv with auto_pad SAME_UPPER, stride 2, odd size',
    input: [1, 3, 15, 15],
    build: (b) => b.initializer('w', 'float32', [6, 3, 3, 3], zeros(6 * 27)).node('Conv', ['x', 'w'], ['y'], { auto_pad: 'SAME_UPPER', strides: [2, 2] }),
    macs: 6 * 8 * 8 * 3 * 3 * 3,
    outShape: [1, 6, 8, 8],
  },
  {
    name: 'dilated Conv, asymmetric pads',
    input: [1, 2, 10, 10],
    build: (b) => b.initializer('w', 'float32', [4, 2, 3, 3], zeros(4 * 18)).node('Conv', ['x', 'w'], ['y'], { dilations: [2, 2], pads: [0, 1, 2, 0] }),
    macs: 4 * 8 * 7 * 2 * 3 * 3,
    outShape: [1, 4, 8, 7],
  },
  {
    name: 'depthwise Conv',
    input: [1, 8, 6, 6],
    build: (b) => b.initializer('w', 'float32', [8, 1, 3, 3], zeros(72)).node('Conv', ['x', 'w'], ['y'], { group: 8 }),
    macs: 8 * 4 * 4 * 1 * 3 * 3,
    outShape: [1, 8, 4, 4],
  },
  {
    name: 'ConvTranspose stride 2',
    input: [1, 4, 5, 5],
    build: (b) => b.initializer('w', 'float32', [4, 2, 3, 3], zeros(72)).node('ConvTranspose', ['x', 'w'], ['y'], { strides: [2, 2] }),
    macs: 4 * 5 * 5 * 2 * 3 * 3,
    outShape: [1, 2, 11, 11],
  },
  {
    name: 'Gemm with transB after Flatten',
    input: ['N', 4, 4, 4],
    build: (b) => b.initializer('w', 'float32', [10, 64], zeros(640)).node('Flatten', ['x'], ['f']).node('Gemm', ['f', 'w'], ['y'], { transB: 1 }),
    macs: 64 * 10,
    outShape: [1, 10],
  },
  {
    name: 'Gemm with transA',
    input: [6, 2],
    build: (b) => b.initializer('w', 'float32', [6, 5], zeros(30)).node('Gemm', ['x', 'w'], ['y'], { transA: 1 }),
    macs: 2 * 5 * 6,
    outShape: [2, 5],
  },
  {
    name: 'batched MatMul with broadcast weights',
    input: ['N', 2, 5, 7],
    build: (b) => b.initializer('w', 'float32', [7, 3], zeros(21)).node('MatMul', ['x', 'w'], ['y']),
    macs: 2 * 5 * 3 * 7,
    outShape: [1, 2, 5, 3],
  },
  {
    name: 'MatMul of a vector',
    input: [7],
    build: (b) => b.initializer('w', 'float32', [7, 3], zeros(21)).node('MatMul', ['x', 'w'], ['y']),
    macs: 3 * 7,
    outShape: [3],
  },
  {
    name: 'folded Shape → Gather → Unsqueeze → Concat → Reshape before MatMul',
    input: ['N', 8, 4, 4],
    build: (b) =>
      b
        .initializer('zero', 'int64', [], [0])
        .initializer('minus1', 'int64', [1], [-1])
        .initializer('w', 'float32', [128, 10], zeros(1280))
        .node('Shape', ['x'], ['s'])
        .node('Gather', ['s', 'zero'], ['n'], { axis: 0 })
        .node('Unsqueeze', ['n', 'zero'], ['n1'])
        .node('Concat', ['n1', 'minus1'], ['target'], { axis: 0 })
        .node('Reshape', ['x', 'target'], ['r'])
        .node('MatMul', ['r', 'w'], ['y']),
    macs: 128 * 10,
    outShape: [1, 10],
  },
  {
    name: 'Slice flip, Pad, Resize, ceil-mode MaxPool, Split, Transpose, ReduceMean, Squeeze',
    input: [1, 3, 8, 8],
    build: (b) =>
      b
        .initializer('starts', 'int64', [1], [-1])
        .initializer('ends', 'int64', [1], [-(2 ** 53)])
        .initializer('axes', 'int64', [1], [3])
        .initializer('steps', 'int64', [1], [-1])
        .initializer('pads', 'int64', [8], [0, 0, 1, 1, 0, 0, 1, 1])
        .initializer('scales', 'float32', [4], [1, 1, 2, 2])
        .initializer('w', 'float32', [4, 3, 1, 1], zeros(12))
        .initializer('split', 'int64', [2], [1, 3])
        .initializer('sq', 'int64', [1], [2])
        .initializer('fc', 'float32', [4, 5], zeros(20))
        .node('Slice', ['x', 'starts', 'ends', 'axes', 'steps'], ['flip']) // [1,3,8,8]
        .node('Pad', ['flip', 'pads'], ['pad']) // [1,3,10,10]
        .node('Resize', ['pad', '', 'scales'], ['up']) // [1,3,20,20]
        .node('Conv', ['up', 'w'], ['c']) // [1,4,20,20]
        .node('MaxPool', ['c'], ['p'], { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 }) // [1,4,10,10]
        .node('Split', ['p', 'split'], ['p1', 'p3'], { axis: 1 })
        .node('Concat', ['p3', 'p1'], ['cat'], { axis: 1 })
        .node('Transpose', ['cat'], ['t'], { perm: [0, 2, 3, 1] }) // [1,10,10,4]
        .node('ReduceMean', ['t'], ['m'], { axes: [2] }) // [1,10,1,4]
        .node('Squeeze', ['m', 'sq'], ['s']) // [1,10,4]
        .node('MatMul', ['s', 'fc'], ['y']), // [1,10,5]
    macs: 4 * 20 * 20 * 3 + 10 * 5 * 4,
    outShape: [1, 10, 5],
  },
  {
    name: 'attribute-form Unsqueeze/Squeeze/Split at opset 11, Reshape with 0',
    input: [1, 6, 4],
    opset: 11,
    build: (b) =>
      b
        .initializer('shape', 'int64', [3], [0, 0, 4])
        .initializer('w', 'float32', [4, 2], zeros(8))
        .node('Split', ['x'], ['a', 'b'], { axis: 1, split: [2, 4] }) // [1,4,4]
        .node('Unsqueeze', ['b'], ['u'], { axes: [0] }) // [1,1,4,4]
        .node('Squeeze', ['u'], ['s'], { axes: [0] }) // [1,4,4]
        .node('Reshape', ['s', 'shape'], ['r'])
        .node('MatMul', ['r', 'w'], ['y']), // [1,4,2]
    macs: 4 * 2 * 4,
    outShape: [1, 4, 2],
  },
];

describe('countMacs on built models', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const bytes = model(c.input, c.build, c.opset);
      expect(countMacs(bytes)).toMatchObject({ macs: c.macs, unresolved: [] });
      expect(inferredOutput(bytes)).toEqual(c.outShape);
      // onnxruntime is the referee for the inferred shapes.
      const concrete = c.input.map((d) => (typeof d === 'number' ? d : 1));
      expect([...(await ortOutputDims(bytes, concrete))]).toEqual(c.outShape);
    });
  }

  it('splits the total by op type', () => {
    const bytes = model([1, 3, 4, 4], (b) =>
      b
        .initializer('w', 'float32', [2, 3, 1, 1], zeros(6))
        .initializer('fc', 'float32', [32, 3], zeros(96))
        .node('Conv', ['x', 'w'], ['c'])
        .node('Flatten', ['c'], ['f'])
        .node('Gemm', ['f', 'fc'], ['y']),
    );
    expect(countMacs(bytes)).toEqual({ macs: 2 * 16 * 3 + 32 * 3, byOp: { Conv: 96, Gemm: 96 }, unresolved: [] });
  });

  it('lists nodes it cannot infer and keeps counting the rest', () => {
    const bytes = model([1, 3, 4, 4], (b) =>
      b
        .initializer('w', 'float32', [2, 3, 1, 1], zeros(6))
        .node('Conv', ['x', 'w'], ['a'])
        .node('Mystery', ['a'], ['b'], {}, 'example.custom')
        .node('Conv', ['b', 'w'], ['y']),
    );
    const result = countMacs(bytes);
    expect(result.macs).toBe(2 * 16 * 3);
    expect(result.unresolved).toEqual(['Mystery:Mystery_1', 'Conv:Conv_2']);
  });

  it('does not guess symbolic spatial dims', () => {
    const bytes = model(['N', 3, 'H', 'W'], (b) => b.initializer('w', 'float32', [2, 3, 1, 1], zeros(6)).node('Conv', ['x', 'w'], ['y']));
    expect(countMacs(bytes)).toMatchObject({ macs: 0, unresolved: ['Conv:Conv_0'] });
  });
});
