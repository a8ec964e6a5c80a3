/**
 * Multiply-accumulate count of an ONNX model, from static shapes: a hardware-neutral measure
 * of how much compute one image costs, used to compare the cascade's stages.
 */
import { decodeModel, type NodeProto } from './onnx-proto.js';
import { inferShapes, type Shape } from './onnx-shapes.js';

export interface MacCount {
  /** Multiply-accumulates for one image: a symbolic batch dim counts as 1 (a fixed batch B counts B). */
  macs: number;
  /** The same total split by op type. */
  byOp: Record<string, number>;
  /** Nodes whose shapes could not be inferred ("OpType:name"); their MACs are missing. */
  unresolved: string[];
}

type Shapes = (name: string | undefined) => Shape | undefined;
type MacFormula = (node: NodeProto, shapeOf: Shapes) => number | undefined;

const prod = (xs: number[]): number => xs.reduce((a, b) => a * b, 1);

/** Each output element of a Conv sums (in_channels/group) * kernel products. */
const conv =
  (wIndex: number): MacFormula =>
  (node, shapeOf) => {
    const w = shapeOf(node.input?.[wIndex]);
    const y = shapeOf(node.output?.[0]);
    return w && y ? prod(y) * prod(w.slice(1)) : undefined;
  };

/** Each input element of a ConvTranspose scatters into (out_channels/group) * kernel outputs. */
const convTranspose: MacFormula = (node, shapeOf) => {
  const x = shapeOf(node.input?.[0]);
  const w = shapeOf(node.input?.[1]);
  return x && w ? prod(x) * prod(w.slice(1)) : undefined;
};

/** Each output element of a matrix product sums K products, K the inner dim of A. */
const matmul =
  (aIndex: number, transAttr?: string): MacFormula =>
  (node, shapeOf) => {
    const a = shapeOf(node.input?.[aIndex]);
    const y = shapeOf(node.output?.[0]);
    if (!a || !y) return undefined;
    const transA = transAttr !== undefined && node.attribute?.find((x) => x.name === transAttr)?.i === 1;
    const k = transA ? a[a.length - 2] : a[a.length - 1];
    return k === undefined ? undefined : prod(y) * k;
  };

const FORMULAS: Record<string, MacFormula> = {
  Conv: conv(1),
  ConvInteger: conv(1),
  QLinearConv: conv(3),
  ConvTranspose: convTranspose,
  Gemm: matmul(0, 'transA'),
  MatMul: matmul(0),
  MatMulInteger: matmul(0),
  QLinearMatMul: matmul(0),
};

/** Counts the MACs of Conv/MatMul-like ops in an ONNX model (bytes of a .onnx file). */
export function countMacs(modelBytes: Uint8Array): MacCount {
  const model = decodeModel(modelBytes);
  const graph = model.graph ?? {};
  const opset = model.opset_import?.find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 1;
  const { shapes, unresolved } = inferShapes(graph, opset);
  const shapeOf: Shapes = (name) => (name ? shapes.get(name) : undefined);

  const byOp: Record<string, number> = {};
  let macs = 0;
  for (const node of graph.node ?? []) {
    const op = node.op_type ?? '';
    const formula = FORMULAS[op];
    const count = formula?.(node, shapeOf);
    if (count === undefined) continue; // not a MAC op, or already listed as unresolved
    byOp[op] = (byOp[op] ?? 0) + count;
    macs += count;
  }
  return { macs, byOp, unresolved };
}
