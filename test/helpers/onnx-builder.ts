/**
 * A tiny programmatic builder for test ONNX models (opset 13, IR version 8 by default).
 *
 *   const bytes = new OnnxBuilder()
 *     .input('x', 'float32', ['N', 3, 8, 8])
 *     .initializer('w', 'float32', [4, 3, 1, 1], weights)
 *     .node('Conv', ['x', 'w'], ['y'], { pads: [0, 0, 0, 0] })
 *     .output('y', 'float32', ['N', 4, 8, 8])
 *     .build();
 *
 * Attribute values: an integer is INT, any other number FLOAT, a number[] INTS (FLOATS when
 * any element is fractional), a string STRING; wrap with float()/floats() when a whole number
 * must be a float (Gemm alpha = 1.0), or tensor() for a TENSOR attribute.
 */
import { toFloat16Bits } from '../../pipeline/onnx/float16.js';
import {
  AttributeType,
  DataType,
  encodeModel,
  type AttributeProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from '../../pipeline/onnx/onnx-proto.js';

export type Dtype = 'float32' | 'float16' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';
/** A dimension: a fixed size or a symbolic name such as 'N'. */
export type Dim = number | string;

const DTYPES: Record<Dtype, number> = {
  float32: DataType.FLOAT,
  float16: DataType.FLOAT16,
  float64: DataType.DOUBLE,
  int64: DataType.INT64,
  int32: DataType.INT32,
  int8: DataType.INT8,
  uint8: DataType.UINT8,
  bool: DataType.BOOL,
};

type Tagged = { float: number } | { floats: number[] } | { tensor: TensorProto };
export type AttrValue = number | number[] | string | Tagged;

/** Marks a whole number as a FLOAT attribute. */
export const float = (v: number): Tagged => ({ float: v });
/** Marks a list of whole numbers as a FLOATS attribute. */
export const floats = (v: number[]): Tagged => ({ floats: v });
/** A TENSOR attribute (Constant's `value`). */
export const tensor = (t: TensorProto): Tagged => ({ tensor: t });

/** A tensor with its data in little-endian raw_data, as exporters write it. */
export function makeTensor(name: string, dtype: Dtype, dims: number[], values: ArrayLike<number>): TensorProto {
  const width = { float32: 4, float16: 2, float64: 8, int64: 8, int32: 4, int8: 1, uint8: 1, bool: 1 }[dtype];
  const view = new DataView(new ArrayBuffer(values.length * width));
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const o = i * width;
    switch (dtype) {
      case 'float32':
        view.setFloat32(o, v, true);
        break;
      case 'float16':
        view.setUint16(o, toFloat16Bits(v), true);
        break;
      case 'float64':
        view.setFloat64(o, v, true);
        break;
      case 'int64':
        view.setBigInt64(o, BigInt(v), true);
        break;
      case 'int32':
        view.setInt32(o, v, true);
        break;
      case 'int8':
        view.setInt8(o, v);
        break;
      default:
        view.setUint8(o, v);
    }
  }
  return { name, data_type: DTYPES[dtype], dims, raw_data: new Uint8Array(view.buffer) };
}

function valueInfo(name: string, dtype: Dtype, shape?: Dim[]): ValueInfoProto {
  if (!shape) return { name, type: { tensor_type: { elem_type: DTYPES[dtype] } } };
  const dim = shape.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d }));
  return { name, type: { tensor_type: { elem_type: DTYPES[dtype], shape: { dim } } } };
}

function attribute(name: string, v: AttrValue): AttributeProto {
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') {
    return Number.isInteger(v) ? { name, type: AttributeType.INT, i: v } : { name, type: AttributeType.FLOAT, f: v };
  }
  if (Array.isArray(v)) {
    return v.every(Number.isInteger) ? { name, type: AttributeType.INTS, ints: v } : { name, type: AttributeType.FLOATS, floats: v };
  }
  if ('float' in v) return { name, type: AttributeType.FLOAT, f: v.float };
  if ('floats' in v) return { name, type: AttributeType.FLOATS, floats: v.floats };
  return { name, type: AttributeType.TENSOR, t: v.tensor };
}

export class OnnxBuilder {
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly nodes: NodeProto[] = [];

  constructor(private readonly options: { opset?: number; irVersion?: number; name?: string } = {}) {}

  /** Declares a graph input. */
  input(name: string, dtype: Dtype, shape: Dim[]): this {
    this.inputs.push(valueInfo(name, dtype, shape));
    return this;
  }

  /** Declares a graph output; leave out `shape` to declare it unknown. */
  output(name: string, dtype: Dtype, shape?: Dim[]): this {
    this.outputs.push(valueInfo(name, dtype, shape));
    return this;
  }

  /** Adds a constant weight tensor. */
  initializer(name: string, dtype: Dtype, dims: number[], values: ArrayLike<number>): this {
    this.initializers.push(makeTensor(name, dtype, dims, values));
    return this;
  }

  /** Appends a node; nodes must be added in topological order. */
  node(op: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}, domain = ''): this {
    this.nodes.push({
      op_type: op,
      name: `${op}_${this.nodes.length}`,
      input: inputs,
      output: outputs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      ...(domain ? { domain } : {}),
    });
    return this;
  }

  /** The model as a ModelProto object. */
  toModel(): ModelProto {
    return {
      ir_version: this.options.irVersion ?? 8,
      opset_import: [{ domain: '', version: this.options.opset ?? 13 }],
      producer_name: 'cascade-test-builder',
      graph: {
        name: this.options.name ?? 'test',
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    };
  }

  /** The model as .onnx bytes. */
  build(): Uint8Array {
    return encodeModel(this.toModel());
  }
}
