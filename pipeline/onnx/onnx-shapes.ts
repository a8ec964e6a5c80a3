/**
 * Static shape inference over an ONNX graph, covering the ops of common image classifiers
 * (float, QDQ and QLinear int8). A symbolic or unknown batch dim is taken as 1: one image.
 * Small constant tensors are folded (Shape → Gather → Unsqueeze → Concat → Reshape chains
 * are how exporters spell "flatten keeping the batch"), so the ops consuming them resolve.
 */
import {
  attrInt,
  attrInts,
  attrString,
  DataType,
  getAttribute,
  tensorSize,
  tensorToNumbers,
  type GraphProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './onnx-proto.js';

export type Shape = number[];

export interface ShapeInference {
  /** Shape of every tensor that could be inferred, by name. */
  shapes: Map<string, Shape>;
  /** Nodes whose output shapes could not be inferred, as "OpType:name". */
  unresolved: string[];
}

/** Constants larger than this are not folded: shape arithmetic only ever needs small ones. */
const MAX_FOLDED = 1024;

/** Thrown by handlers when an input is unknown or shapes disagree; the node is unresolved. */
class ShapeError extends Error {}

interface Ctx {
  node: NodeProto;
  opset: number;
  /** Whether input i is present (optional inputs may be missing or named ''). */
  has(i: number): boolean;
  /** Shape of input i; throws ShapeError when it is not known. */
  shape(i: number): Shape;
  /** Constant value of input i; throws ShapeError when it is not a known constant. */
  value(i: number): number[];
  /** Constant value of input i, or undefined. */
  maybeValue(i: number): number[] | undefined;
  /** Records a folded constant for output i. */
  fold(i: number, values: number[]): void;
}

/** Output shapes by output index; undefined entries are outputs that could not be inferred. */
type Handler = (c: Ctx) => (Shape | undefined)[];

/** Infers the shape of every tensor in `graph`; `opset` is the default-domain opset version. */
export function inferShapes(graph: GraphProto, opset: number): ShapeInference {
  const shapes = new Map<string, Shape>();
  const initializers = new Map<string, TensorProto>();
  const folded = new Map<string, number[]>();
  const declared = new Map<string, Shape>();
  const unresolved: string[] = [];

  for (const vi of graph.input ?? []) {
    const s = valueInfoShape(vi);
    if (vi.name && s) shapes.set(vi.name, s);
  }
  // Initializers after inputs: in IR < 4 models every weight is also listed as a graph input.
  for (const t of graph.initializer ?? []) {
    if (!t.name) continue;
    shapes.set(t.name, [...(t.dims ?? [])]);
    initializers.set(t.name, t);
  }
  // Declared shapes are only a fallback for ops this file cannot infer.
  for (const vi of [...(graph.value_info ?? []), ...(graph.output ?? [])]) {
    const s = valueInfoShape(vi);
    if (vi.name && s) declared.set(vi.name, s);
  }

  const constValue = (name: string): number[] | undefined => {
    const f = folded.get(name);
    if (f) return f;
    const t = initializers.get(name);
    if (!t || tensorSize(t) > MAX_FOLDED) return undefined;
    const v = tensorToNumbers(t);
    folded.set(name, v);
    return v;
  };

  for (const node of graph.node ?? []) {
    const inputs = node.input ?? [];
    const outputs = node.output ?? [];
    const present = (i: number): boolean => (inputs[i] ?? '') !== '';
    const ctx: Ctx = {
      node,
      opset,
      has: present,
      shape: (i) => {
        const s = present(i) ? shapes.get(inputs[i]!) : undefined;
        if (!s) throw new ShapeError(`shape of '${inputs[i] ?? ''}' unknown`);
        return s;
      },
      value: (i) => {
        const v = present(i) ? constValue(inputs[i]!) : undefined;
        if (!v) throw new ShapeError(`value of '${inputs[i] ?? ''}' unknown`);
        return v;
      },
      maybeValue: (i) => (present(i) ? constValue(inputs[i]!) : undefined),
      fold: (i, values) => {
        const name = outputs[i];
        if (name && values.length <= MAX_FOLDED) folded.set(name, values);
      },
    };
    let inferred: (Shape | undefined)[] = [];
    try {
      inferred = HANDLERS[node.op_type ?? '']?.(ctx) ?? [];
    } catch {
      // Whatever went wrong (unknown input, odd attributes, external data), the caller wants
      // the rest of the graph, with this node reported rather than an exception.
    }
    let complete = true;
    outputs.forEach((name, i) => {
      if (!name) return;
      const s = [inferred[i], declared.get(name)].find((x) => x?.every((d) => Number.isInteger(d) && d >= 0));
      if (s) shapes.set(name, s);
      else complete = false;
    });
    if (!complete) unresolved.push(`${node.op_type ?? '?'}:${node.name || outputs[0] || '?'}`);
  }
  return { shapes, unresolved };
}

/**
 * Shape from a ValueInfoProto with a symbolic or missing batch dim (dim 0) as 1. Undefined
 * when any other dim is not fixed: guessing 1 for a height or width would give a plausible
 * but wrong count instead of an honest "unresolved".
 */
function valueInfoShape(vi: ValueInfoProto): Shape | undefined {
  const dims = vi.type?.tensor_type?.shape?.dim;
  if (!dims) return undefined;
  const shape = dims.map((d, i) => d.dim_value ?? (i === 0 ? 1 : -1));
  return shape.includes(-1) ? undefined : shape;
}

/** The value of a Constant node as a tensor, whichever attribute spells it. */
function constantTensor(node: NodeProto): TensorProto | undefined {
  const t = getAttribute(node, 'value')?.t;
  if (t) return t;
  const a = node.attribute?.[0];
  switch (a?.name) {
    case 'value_float':
      return { dims: [], data_type: DataType.FLOAT, float_data: [a.f ?? 0] };
    case 'value_floats':
      return { dims: [a.floats?.length ?? 0], data_type: DataType.FLOAT, float_data: a.floats ?? [] };
    case 'value_int':
      return { dims: [], data_type: DataType.INT64, int64_data: [a.i ?? 0] };
    case 'value_ints':
      return { dims: [a.ints?.length ?? 0], data_type: DataType.INT64, int64_data: a.ints ?? [] };
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Shape arithmetic

const prod = (xs: number[]): number => xs.reduce((a, b) => a * b, 1);

function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new ShapeError(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

/** Numpy-style multidirectional broadcast. */
function broadcast(...shapes: Shape[]): Shape {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Shape = [];
  for (let i = 0; i < rank; i++) {
    let dim = 1;
    for (const s of shapes) {
      const d = s[s.length - rank + i] ?? 1;
      if (d === 1) continue;
      if (dim !== 1 && dim !== d) throw new ShapeError(`cannot broadcast ${shapes.join(' with ')}`);
      dim = d;
    }
    out.push(dim);
  }
  return out;
}

/** Output length of a sliding window (Conv, pools) along one spatial axis. */
function windowOut(
  size: number,
  kernel: number,
  stride: number,
  dilation: number,
  padBegin: number,
  padEnd: number,
  autoPad: string,
  ceilMode: boolean,
): number {
  const span = (kernel - 1) * dilation + 1;
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') return Math.ceil(size / stride);
  if (autoPad === 'VALID') return Math.floor((size - span) / stride) + 1;
  const room = size + padBegin + padEnd - span;
  if (!ceilMode) return Math.floor(room / stride) + 1;
  const out = Math.ceil(room / stride) + 1;
  // onnxruntime (like PyTorch) drops a last window that would start inside the end padding.
  return (out - 1) * stride >= size + padBegin ? out - 1 : out;
}

function spatialOut(c: Ctx, x: Shape, kernel: number[], ceilMode: boolean): Shape {
  const n = kernel.length;
  const strides = attrInts(c.node, 'strides', Array(n).fill(1));
  const dilations = attrInts(c.node, 'dilations', Array(n).fill(1));
  const pads = attrInts(c.node, 'pads', Array(2 * n).fill(0));
  const autoPad = attrString(c.node, 'auto_pad', 'NOTSET');
  return kernel.map((k, i) => windowOut(x[2 + i]!, k, strides[i] ?? 1, dilations[i] ?? 1, pads[i] ?? 0, pads[i + n] ?? 0, autoPad, ceilMode));
}

function conv(xIndex: number, wIndex: number): Handler {
  return (c) => {
    const x = c.shape(xIndex);
    const w = c.shape(wIndex);
    const kernel = attrInts(c.node, 'kernel_shape', w.slice(2));
    return [[x[0]!, w[0]!, ...spatialOut(c, x, kernel, false)]];
  };
}

const convTranspose: Handler = (c) => {
  const x = c.shape(0);
  const w = c.shape(1);
  const kernel = attrInts(c.node, 'kernel_shape', w.slice(2));
  const n = kernel.length;
  const channels = w[1]! * attrInt(c.node, 'group', 1);
  const outputShape = attrInts(c.node, 'output_shape', []);
  if (outputShape.length > 0) return [[x[0]!, channels, ...outputShape.slice(-n)]];
  const strides = attrInts(c.node, 'strides', Array(n).fill(1));
  const dilations = attrInts(c.node, 'dilations', Array(n).fill(1));
  const pads = attrInts(c.node, 'pads', Array(2 * n).fill(0));
  const outPad = attrInts(c.node, 'output_padding', Array(n).fill(0));
  const autoPad = attrString(c.node, 'auto_pad', 'NOTSET');
  const spatial = kernel.map((k, i) => {
    const s = strides[i] ?? 1;
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') return x[2 + i]! * s;
    return s * (x[2 + i]! - 1) + (outPad[i] ?? 0) + (k - 1) * (dilations[i] ?? 1) + 1 - (pads[i] ?? 0) - (pads[i + n] ?? 0);
  });
  return [[x[0]!, channels, ...spatial]];
};

const pool: Handler = (c) => {
  const x = c.shape(0);
  const kernel = attrInts(c.node, 'kernel_shape', []);
  if (kernel.length === 0) throw new ShapeError('pool without kernel_shape');
  const out = [x[0]!, x[1]!, ...spatialOut(c, x, kernel, attrInt(c.node, 'ceil_mode', 0) === 1)];
  return [out, out]; // MaxPool's optional Indices output has the same shape
};

const globalPool: Handler = (c) => {
  const x = c.shape(0);
  const ones = x.slice(2).map(() => 1);
  // com.microsoft QLinearGlobalAveragePool may run on NHWC data.
  if (attrInt(c.node, 'channels_last', 0) === 1) return [[x[0]!, ...ones, x[x.length - 1]!]];
  return [[x[0]!, x[1]!, ...ones]];
};

const gemm: Handler = (c) => {
  const a = c.shape(0);
  const b = c.shape(1);
  const m = attrInt(c.node, 'transA', 0) ? a[1]! : a[0]!;
  const n = attrInt(c.node, 'transB', 0) ? b[0]! : b[1]!;
  return [[m, n]];
};

/** numpy.matmul output shape, including the 1-D promotion rules. */
export function matmulShape(a: Shape, b: Shape): Shape {
  const a2 = a.length === 1 ? [1, a[0]!] : a;
  const b2 = b.length === 1 ? [b[0]!, 1] : b;
  if (a2[a2.length - 1] !== b2[b2.length - 2]) throw new ShapeError(`matmul ${a} x ${b}`);
  const out = [...broadcast(a2.slice(0, -2), b2.slice(0, -2)), a2[a2.length - 2]!, b2[b2.length - 1]!];
  if (a.length === 1) out.splice(-2, 1);
  if (b.length === 1) out.pop();
  return out;
}

const matmul =
  (aIndex: number, bIndex: number): Handler =>
  (c) => [matmulShape(c.shape(aIndex), c.shape(bIndex))];

// ---------------------------------------------------------------------------------------------
// Constant folding helpers (row-major flat arrays)

/** Picks `indices` along `axis` of a flat tensor. */
function take(values: number[], shape: Shape, axis: number, indices: number[]): number[] {
  const inner = prod(shape.slice(axis + 1));
  const outer = prod(shape.slice(0, axis));
  const dim = shape[axis]!;
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const idx of indices) {
      const base = (o * dim + idx) * inner;
      for (let k = 0; k < inner; k++) out.push(values[base + k]!);
    }
  }
  return out;
}

function broadcastValues(inputs: { v: number[]; s: Shape }[], f: (xs: number[]) => number): number[] {
  const outShape = broadcast(...inputs.map((x) => x.s));
  const total = prod(outShape);
  const out = new Array<number>(total);
  const args = new Array<number>(inputs.length);
  for (let flat = 0; flat < total; flat++) {
    inputs.forEach(({ v, s }, j) => {
      // Map the output index to this input's index, pinning broadcast dims to 0.
      let rem = flat;
      let idx = 0;
      let stride = 1;
      for (let d = outShape.length - 1; d >= 0; d--) {
        const od = outShape[d]!;
        const coord = rem % od;
        rem = Math.floor(rem / od);
        const sd = s[d - (outShape.length - s.length)];
        if (sd === undefined) continue;
        idx += (sd === 1 ? 0 : coord) * stride;
        stride *= sd;
      }
      args[j] = v[idx]!;
    });
    out[flat] = f(args);
  }
  return out;
}

const INT_TYPES = new Set<number>([
  DataType.UINT8,
  DataType.INT8,
  DataType.UINT16,
  DataType.INT16,
  DataType.INT32,
  DataType.INT64,
  DataType.UINT32,
  DataType.UINT64,
]);

// ---------------------------------------------------------------------------------------------
// Handlers

/** Every output has the shape of input `index`; values pass through for Identity-like ops. */
const same =
  (index = 0, passValues = false): Handler =>
  (c) => {
    const s = c.shape(index);
    if (passValues) {
      const v = c.maybeValue(index);
      if (v) c.fold(0, v);
    }
    return (c.node.output ?? []).map(() => s);
  };

const elementwise =
  (fn?: (xs: number[]) => number, indices?: number[]): Handler =>
  (c) => {
    const idx = indices ?? (c.node.input ?? []).map((_, i) => i).filter((i) => c.has(i));
    const shapes = idx.map((i) => c.shape(i));
    const out = broadcast(...shapes);
    if (fn && prod(out) <= MAX_FOLDED) {
      const values = idx.map((i) => c.maybeValue(i));
      if (values.every((v) => v !== undefined)) {
        c.fold(
          0,
          broadcastValues(
            values.map((v, j) => ({ v: v!, s: shapes[j]! })),
            fn,
          ),
        );
      }
    }
    return [out];
  };

const cast: Handler = (c) => {
  const v = c.maybeValue(0);
  const to = attrInt(c.node, 'to', DataType.FLOAT);
  if (v) c.fold(0, INT_TYPES.has(to) ? v.map(Math.trunc) : to === DataType.BOOL ? v.map((x) => (x ? 1 : 0)) : v);
  return [c.shape(0)];
};

const concat =
  (inputIndices?: (c: Ctx) => number[]): Handler =>
  (c) => {
    const idx = inputIndices ? inputIndices(c) : (c.node.input ?? []).map((_, i) => i).filter((i) => c.has(i));
    const shapes = idx.map((i) => c.shape(i));
    const first = shapes[0];
    if (!first) throw new ShapeError('Concat without inputs');
    const axis = normAxis(attrInt(c.node, 'axis', 0), first.length);
    const out = [...first];
    out[axis] = shapes.reduce((sum, s) => sum + s[axis]!, 0);
    const values = idx.map((i) => c.maybeValue(i));
    if (values.every((v) => v !== undefined)) {
      const outer = prod(first.slice(0, axis));
      const result: number[] = [];
      for (let o = 0; o < outer; o++) {
        values.forEach((v, j) => {
          const chunk = prod(shapes[j]!.slice(axis));
          result.push(...v!.slice(o * chunk, (o + 1) * chunk));
        });
      }
      c.fold(0, result);
    }
    return [out];
  };

const split: Handler = (c) => {
  const x = c.shape(0);
  const axis = normAxis(attrInt(c.node, 'axis', 0), x.length);
  const count = (c.node.output ?? []).length;
  const dim = x[axis]!;
  let sizes = c.opset >= 13 && c.has(1) ? c.value(1) : attrInts(c.node, 'split', []);
  if (sizes.length === 0) {
    const chunk = Math.ceil(dim / attrInt(c.node, 'num_outputs', count));
    sizes = Array.from({ length: count }, (_, i) => Math.max(0, Math.min(chunk, dim - i * chunk)));
  }
  return sizes.map((size) => x.map((d, i) => (i === axis ? size : d)));
};

/** Start and length of one Slice axis, clamped as the ONNX spec prescribes. */
function sliceRange(dim: number, start: number, end: number, step: number): { start: number; len: number } {
  if (step === 0) throw new ShapeError('Slice step 0');
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) {
    s = Math.min(Math.max(s, 0), dim);
    e = Math.min(Math.max(e, 0), dim);
  } else {
    s = Math.min(Math.max(s, 0), dim - 1);
    e = Math.min(Math.max(e, -1), dim - 1);
  }
  return { start: s, len: Math.max(0, Math.ceil((e - s) / step)) };
}

const slice: Handler = (c) => {
  const x = c.shape(0);
  const useInputs = c.opset >= 10;
  const starts = useInputs ? c.value(1) : attrInts(c.node, 'starts', []);
  const ends = useInputs ? c.value(2) : attrInts(c.node, 'ends', []);
  const axesRaw =
    useInputs && c.has(3)
      ? c.value(3)
      : attrInts(
          c.node,
          'axes',
          starts.map((_, i) => i),
        );
  const steps = useInputs && c.has(4) ? c.value(4) : starts.map(() => 1);
  const out = [...x];
  let values = c.maybeValue(0);
  let current = [...x];
  axesRaw.forEach((a, i) => {
    const axis = normAxis(a, x.length);
    const step = steps[i] ?? 1;
    const { start, len } = sliceRange(x[axis]!, starts[i]!, ends[i]!, step);
    out[axis] = len;
    if (values) {
      values = take(
        values,
        current,
        axis,
        Array.from({ length: len }, (_, k) => start + k * step),
      );
      current = [...current];
      current[axis] = len;
    }
  });
  if (values) c.fold(0, values);
  return [out];
};

const gather: Handler = (c) => {
  const data = c.shape(0);
  const indices = c.shape(1);
  const axis = normAxis(attrInt(c.node, 'axis', 0), data.length);
  const dv = c.maybeValue(0);
  const iv = c.maybeValue(1);
  if (dv && iv)
    c.fold(
      0,
      take(
        dv,
        data,
        axis,
        iv.map((i) => (i < 0 ? i + data[axis]! : i)),
      ),
    );
  return [[...data.slice(0, axis), ...indices, ...data.slice(axis + 1)]];
};

const flatten: Handler = (c) => {
  const x = c.shape(0);
  const axis = attrInt(c.node, 'axis', 1);
  const a = axis < 0 ? axis + x.length : axis;
  const v = c.maybeValue(0);
  if (v) c.fold(0, v);
  return [[prod(x.slice(0, a)), prod(x.slice(a))]];
};

const reshape: Handler = (c) => {
  const x = c.shape(0);
  const target = c.opset >= 5 ? c.value(1) : attrInts(c.node, 'shape', []);
  const allowZero = attrInt(c.node, 'allowzero', 0) === 1;
  const out = target.map((d, i) => (d === 0 && !allowZero ? x[i]! : d));
  const minus = out.indexOf(-1);
  if (minus >= 0) {
    const known = prod(out.filter((_, i) => i !== minus));
    out[minus] = known === 0 ? 0 : prod(x) / known;
  }
  if (prod(out) !== prod(x)) throw new ShapeError(`Reshape ${x} to ${target}`);
  const v = c.maybeValue(0);
  if (v) c.fold(0, v);
  return [out];
};

const transpose: Handler = (c) => {
  const x = c.shape(0);
  const perm = attrInts(
    c.node,
    'perm',
    x.map((_, i) => x.length - 1 - i),
  );
  return [perm.map((p) => x[p]!)];
};

/** Axes of Squeeze/Unsqueeze/Reduce*: an input from `inputOpset` on, an attribute before. */
function axesOf(c: Ctx, inputOpset: number): number[] | undefined {
  if (c.opset >= inputOpset) return c.has(1) ? c.value(1) : undefined;
  const a = getAttribute(c.node, 'axes');
  return a ? (a.ints ?? []) : undefined;
}

const squeeze: Handler = (c) => {
  const x = c.shape(0);
  const axes = (axesOf(c, 13) ?? []).map((a) => normAxis(a, x.length));
  const out = x.filter((d, i) => (axes.length ? !axes.includes(i) : d !== 1));
  const v = c.maybeValue(0);
  if (v) c.fold(0, v);
  return [out];
};

const unsqueeze: Handler = (c) => {
  const x = c.shape(0);
  const axes = axesOf(c, 13) ?? [];
  const rank = x.length + axes.length;
  const ones = new Set(axes.map((a) => normAxis(a, rank)));
  const out: Shape = [];
  let k = 0;
  for (let i = 0; i < rank; i++) out.push(ones.has(i) ? 1 : x[k++]!);
  const v = c.maybeValue(0);
  if (v) c.fold(0, v);
  return [out];
};

const shapeOp: Handler = (c) => {
  const x = c.shape(0);
  const rank = x.length;
  const clamp = (i: number): number => Math.min(Math.max(i < 0 ? i + rank : i, 0), rank);
  const dims = x.slice(clamp(attrInt(c.node, 'start', 0)), clamp(attrInt(c.node, 'end', rank)));
  c.fold(0, dims);
  return [[dims.length]];
};

const size: Handler = (c) => {
  c.fold(0, [prod(c.shape(0))]);
  return [[]];
};

const reduce =
  (axesInputOpset: number): Handler =>
  (c) => {
    const x = c.shape(0);
    const keep = attrInt(c.node, 'keepdims', 1) === 1;
    const axes = axesOf(c, axesInputOpset) ?? [];
    if (axes.length === 0 && attrInt(c.node, 'noop_with_empty_axes', 0) === 1) return [x];
    const reduced = new Set(axes.length ? axes.map((a) => normAxis(a, x.length)) : x.map((_, i) => i));
    const out: Shape = [];
    x.forEach((d, i) => {
      if (!reduced.has(i)) out.push(d);
      else if (keep) out.push(1);
    });
    return [out];
  };

const argReduce: Handler = (c) => {
  const x = c.shape(0);
  const axis = normAxis(attrInt(c.node, 'axis', 0), x.length);
  const keep = attrInt(c.node, 'keepdims', 1) === 1;
  return [keep ? x.map((d, i) => (i === axis ? 1 : d)) : x.filter((_, i) => i !== axis)];
};

const pad: Handler = (c) => {
  const x = c.shape(0);
  const pads = c.opset >= 11 ? c.value(1) : attrInts(c.node, 'pads', attrInts(c.node, 'paddings', []));
  const axes = c.opset >= 18 && c.has(3) ? c.value(3).map((a) => normAxis(a, x.length)) : x.map((_, i) => i);
  const out = [...x];
  axes.forEach((axis, i) => {
    out[axis] = x[axis]! + (pads[i] ?? 0) + (pads[i + axes.length] ?? 0);
  });
  return [out];
};

const resize: Handler = (c) => {
  const x = c.shape(0);
  const isUpsample = c.node.op_type === 'Upsample';
  // Resize-10 and Upsample-9 take (X, scales); Resize-11+ takes (X, roi, scales, sizes).
  const sizes = !isUpsample && c.opset >= 11 ? c.maybeValue(3) : undefined;
  if (sizes && sizes.length > 0) return [sizes];
  let scales: number[];
  if (isUpsample && c.opset < 9) scales = getAttribute(c.node, 'scales')?.floats ?? [];
  else scales = c.value(!isUpsample && c.opset >= 11 ? 2 : 1);
  if (scales.length !== x.length) throw new ShapeError('Resize scales rank mismatch');
  return [x.map((d, i) => Math.floor(d * scales[i]!))];
};

const constant: Handler = (c) => {
  const t = constantTensor(c.node);
  if (!t) throw new ShapeError('Constant without a value');
  if (tensorSize(t) <= MAX_FOLDED) c.fold(0, tensorToNumbers(t));
  return [[...(t.dims ?? [])]];
};

const constantOfShape: Handler = (c) => {
  const out = c.value(0);
  const t = getAttribute(c.node, 'value')?.t;
  if (prod(out) <= MAX_FOLDED) c.fold(0, Array(prod(out)).fill(t ? (tensorToNumbers(t)[0] ?? 0) : 0));
  return [out];
};

const expand: Handler = (c) => [broadcast(c.shape(0), c.value(1))];

const tile: Handler = (c) => {
  const repeats = c.value(1);
  return [c.shape(0).map((d, i) => d * (repeats[i] ?? 1))];
};

const range: Handler = (c) => {
  const [start, limit, delta] = [c.value(0)[0]!, c.value(1)[0]!, c.value(2)[0]!];
  const n = Math.max(Math.ceil((limit - start) / delta), 0);
  if (n <= MAX_FOLDED)
    c.fold(
      0,
      Array.from({ length: n }, (_, i) => start + i * delta),
    );
  return [[n]];
};

const batchNorm: Handler = (c) => {
  const x = c.shape(0);
  return [x, [x[1]!], [x[1]!], [x[1]!], [x[1]!]];
};

const layerNorm: Handler = (c) => {
  const x = c.shape(0);
  const axis = normAxis(attrInt(c.node, 'axis', -1), x.length);
  const stats = x.map((d, i) => (i < axis ? d : 1));
  return [x, stats, stats];
};

const dynamicQuantize: Handler = (c) => [c.shape(0), [], []];

const UNARY = [
  'Relu',
  'Clip',
  'Sigmoid',
  'HardSigmoid',
  'HardSwish',
  'Tanh',
  'QuantizeLinear',
  'DequantizeLinear',
  'Dropout',
  'LeakyRelu',
  'Softmax',
  'LogSoftmax',
  'Hardmax',
  'Exp',
  'Log',
  'Sqrt',
  'Neg',
  'Abs',
  'Erf',
  'Floor',
  'Ceil',
  'Round',
  'Reciprocal',
  'InstanceNormalization',
  'LRN',
  'Elu',
  'Selu',
  'Celu',
  'Softplus',
  'Softsign',
  'Gelu',
  'Mish',
  'Not',
  'Sign',
  'LpNormalization',
  'Shrink',
  'ThresholdedRelu',
  'IsNaN',
  'IsInf',
  'Sin',
  'Cos',
  // com.microsoft quantized unary ops: output follows input 0.
  'QLinearLeakyRelu',
  'QLinearSigmoid',
  'QLinearSoftmax',
];

const BROADCASTING = [
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Max',
  'Min',
  'Sum',
  'Mean',
  'Pow',
  'Mod',
  'Equal',
  'Greater',
  'GreaterOrEqual',
  'Less',
  'LessOrEqual',
  'And',
  'Or',
  'Xor',
  'Where',
  'PRelu',
  'BitShift',
];

/** Broadcasting ops whose constant results shape arithmetic may need. */
const FOLDABLE: Record<string, (xs: number[]) => number> = {
  Add: (xs) => xs[0]! + xs[1]!,
  Sub: (xs) => xs[0]! - xs[1]!,
  Mul: (xs) => xs[0]! * xs[1]!,
  // Folded values carry no dtype; shape arithmetic divides integers, so integer inputs truncate.
  Div: (xs) => (Number.isInteger(xs[0]) && Number.isInteger(xs[1]) ? Math.trunc(xs[0]! / xs[1]!) : xs[0]! / xs[1]!),
  Max: (xs) => Math.max(...xs),
  Min: (xs) => Math.min(...xs),
  Sum: (xs) => xs.reduce((a, b) => a + b, 0),
};

const HANDLERS: Record<string, Handler> = {
  ...Object.fromEntries(UNARY.map((op) => [op, same()])),
  ...Object.fromEntries(BROADCASTING.map((op) => [op, elementwise(FOLDABLE[op])])),
  Identity: same(0, true),
  Cast: cast,
  CastLike: cast,
  BatchNormalization: batchNorm,
  LayerNormalization: layerNorm,
  DynamicQuantizeLinear: dynamicQuantize,
  // com.microsoft QLinearAdd/QLinearMul: (A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp).
  QLinearAdd: elementwise(undefined, [0, 3]),
  QLinearMul: elementwise(undefined, [0, 3]),
  Conv: conv(0, 1),
  ConvInteger: conv(0, 1),
  QLinearConv: conv(0, 3),
  ConvTranspose: convTranspose,
  MaxPool: pool,
  AveragePool: pool,
  LpPool: pool,
  QLinearAveragePool: pool,
  GlobalAveragePool: globalPool,
  GlobalMaxPool: globalPool,
  GlobalLpPool: globalPool,
  QLinearGlobalAveragePool: globalPool,
  Gemm: gemm,
  MatMul: matmul(0, 1),
  MatMulInteger: matmul(0, 1),
  QLinearMatMul: matmul(0, 3),
  Concat: concat(),
  // com.microsoft QLinearConcat: (Y_scale, Y_zp, then X, X_scale, X_zp per input).
  QLinearConcat: concat((c) => (c.node.input ?? []).map((_, i) => i).filter((i) => i >= 2 && (i - 2) % 3 === 0)),
  Split: split,
  Slice: slice,
  Gather: gather,
  Flatten: flatten,
  Reshape: reshape,
  Transpose: transpose,
  Squeeze: squeeze,
  Unsqueeze: unsqueeze,
  Shape: shapeOp,
  Size: size,
  ReduceMean: reduce(18),
  ReduceSum: reduce(13),
  ReduceMax: reduce(18),
  ReduceMin: reduce(18),
  ReduceProd: reduce(18),
  ReduceL1: reduce(18),
  ReduceL2: reduce(18),
  ReduceLogSum: reduce(18),
  ReduceLogSumExp: reduce(18),
  ReduceSumSquare: reduce(18),
  ArgMax: argReduce,
  ArgMin: argReduce,
  Pad: pad,
  Resize: resize,
  Upsample: resize,
  Constant: constant,
  ConstantOfShape: constantOfShape,
  Expand: expand,
  Tile: tile,
  Range: range,
};
