import { describe, expect, it } from 'vitest';
import { attrInt, attrInts, attrString, DataType, decodeModel, encodeModel, tensorToNumbers, type TensorProto } from '../../pipeline/onnx/onnx-proto.js';
import { float, makeTensor, OnnxBuilder, tensor } from '../helpers/onnx-builder.js';

function sampleModel(): Uint8Array {
  return new OnnxBuilder({ name: 'sample' })
    .input('x', 'float32', ['N', 3, 4, 4])
    .initializer('w', 'float32', [2, 3, 1, 1], [1, -2, 0.5, 3, 0.25, -1])
    .initializer('h', 'float16', [2], [0.5, -1.5])
    .initializer('shape', 'int64', [2], [0, -1])
    .node('Conv', ['x', 'w'], ['y'], { pads: [0, 0, 0, 0], auto_pad: 'NOTSET', group: 1 })
    .node('LeakyRelu', ['y'], ['z'], { alpha: 0.125 })
    .node('Gemm', ['a', 'b'], ['c'], { alpha: float(1), transA: 0 })
    .node('Constant', [], ['k'], { value: tensor(makeTensor('', 'int64', [1], [-7])) })
    .node('Reshape', ['z', 'shape'], ['out'])
    .output('out', 'float32', ['N', 32])
    .build();
}

describe('onnx-proto', () => {
  it('decodes what it encodes, with snake_case names and int64 as numbers', () => {
    const model = decodeModel(sampleModel());
    expect(model.ir_version).toBe(8);
    expect(model.opset_import).toEqual([{ version: 13 }]); // proto3 drops the empty default domain
    const g = model.graph!;
    expect(g.input?.[0]?.type?.tensor_type?.shape?.dim).toEqual([{ dim_param: 'N' }, { dim_value: 3 }, { dim_value: 4 }, { dim_value: 4 }]);
    expect(g.node?.map((n) => n.op_type)).toEqual(['Conv', 'LeakyRelu', 'Gemm', 'Constant', 'Reshape']);
    const [conv, leaky, gemm, constant] = g.node!;
    expect(attrInts(conv!, 'pads', [9])).toEqual([0, 0, 0, 0]);
    expect(attrString(conv!, 'auto_pad', '')).toBe('NOTSET');
    expect(attrInt(conv!, 'group', 9)).toBe(1);
    expect(attrInt(conv!, 'missing', 9)).toBe(9);
    expect(leaky!.attribute?.[0]).toMatchObject({ name: 'alpha', type: 1, f: 0.125 });
    expect(gemm!.attribute?.[0]).toMatchObject({ name: 'alpha', type: 1, f: 1 });
    // A zero int is omitted on the wire; the helper still reads it as 0, not the fallback.
    expect(attrInt(gemm!, 'transA', 9)).toBe(0);
    expect(tensorToNumbers(constant!.attribute![0]!.t!)).toEqual([-7]);
    const byName = new Map(g.initializer!.map((t) => [t.name, t]));
    expect(tensorToNumbers(byName.get('w')!)).toEqual([1, -2, 0.5, 3, 0.25, -1]);
    expect(tensorToNumbers(byName.get('h')!)).toEqual([0.5, -1.5]);
    expect(tensorToNumbers(byName.get('shape')!)).toEqual([0, -1]);
    expect(byName.get('shape')!.dims).toEqual([2]);
  });

  it('re-encodes a decoded model to the same bytes', () => {
    const bytes = sampleModel();
    expect(Buffer.from(encodeModel(decodeModel(bytes))).equals(Buffer.from(bytes))).toBe(true);
  });

  it('reads typed data fields and unaligned raw_data of every supported type', () => {
    const typed: [TensorProto, number[]][] = [
      [{ data_type: DataType.FLOAT, dims: [2], float_data: [1.5, -2] }, [1.5, -2]],
      [{ data_type: DataType.DOUBLE, dims: [1], double_data: [0.1] }, [0.1]],
      [{ data_type: DataType.INT64, dims: [2], int64_data: [-1, 2 ** 40] }, [-1, 2 ** 40]],
      [{ data_type: DataType.INT8, dims: [2], int32_data: [-5, 7] }, [-5, 7]],
      [{ data_type: DataType.FLOAT16, dims: [2], int32_data: [0x3c00, 0xc000] }, [1, -2]],
    ];
    for (const [t, expected] of typed) expect(tensorToNumbers(t)).toEqual(expected);

    const raw = (data_type: number, bytes: number[]): TensorProto => {
      // Offset by one byte so that typed-array views over raw_data would be misaligned.
      const buf = new Uint8Array(bytes.length + 1);
      buf.set(bytes, 1);
      return { data_type, raw_data: buf.subarray(1) };
    };
    const le = (n: number, width: number): number[] =>
      Array.from({ length: width }, (_, i) => Number((BigInt.asUintN(width * 8, BigInt(n)) >> BigInt(8 * i)) & 0xffn));
    const f32 = [...new Uint8Array(new Float32Array([3.25, -0.5]).buffer)];
    const f64 = [...new Uint8Array(new Float64Array([1e-300]).buffer)];
    expect(tensorToNumbers(raw(DataType.FLOAT, f32))).toEqual([3.25, -0.5]);
    expect(tensorToNumbers(raw(DataType.DOUBLE, f64))).toEqual([1e-300]);
    expect(tensorToNumbers(raw(DataType.FLOAT16, [...le(0x3c00, 2), ...le(0xbc00, 2)]))).toEqual([1, -1]);
    expect(tensorToNumbers(raw(DataType.INT64, [...le(-2, 8), ...le(2 ** 33 + 5, 8)]))).toEqual([-2, 2 ** 33 + 5]);
    expect(tensorToNumbers(raw(DataType.INT32, [...le(-100000, 4), ...le(7, 4)]))).toEqual([-100000, 7]);
    expect(tensorToNumbers(raw(DataType.INT8, [0xff, 0x7f]))).toEqual([-1, 127]);
    expect(tensorToNumbers(raw(DataType.UINT8, [0xff, 0x7f]))).toEqual([255, 127]);
  });
});
