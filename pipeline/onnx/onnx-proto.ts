/**
 * ONNX ModelProto decode/encode with protobufjs, plus readers for tensor data.
 *
 * The schema below is the subset of onnx.proto3 this project needs, with the official field
 * numbers. Fields outside the subset (functions, training info, sparse tensors...) are dropped
 * on decode, so re-encoding a third-party model is lossy for those; our own models use none.
 */
import protobuf from 'protobufjs';
import { fromFloat16Bits } from './float16.js';

const ONNX_PROTO = `
syntax = "proto3";
package onnx;

message AttributeProto {
  enum AttributeType {
    UNDEFINED = 0; FLOAT = 1; INT = 2; STRING = 3; TENSOR = 4; GRAPH = 5; SPARSE_TENSOR = 11;
    TYPE_PROTO = 13; FLOATS = 6; INTS = 7; STRINGS = 8; TENSORS = 9; GRAPHS = 10;
    SPARSE_TENSORS = 12; TYPE_PROTOS = 14;
  }
  string name = 1;
  string ref_attr_name = 21;
  string doc_string = 13;
  AttributeType type = 20;
  float f = 2;
  int64 i = 3;
  bytes s = 4;
  TensorProto t = 5;
  GraphProto g = 6;
  repeated float floats = 7;
  repeated int64 ints = 8;
  repeated bytes strings = 9;
  repeated TensorProto tensors = 10;
  repeated GraphProto graphs = 11;
}

message ValueInfoProto {
  string name = 1;
  TypeProto type = 2;
  string doc_string = 3;
  repeated StringStringEntryProto metadata_props = 4;
}

message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  string name = 3;
  string op_type = 4;
  string domain = 7;
  string overload = 8;
  repeated AttributeProto attribute = 5;
  string doc_string = 6;
  repeated StringStringEntryProto metadata_props = 9;
}

message ModelProto {
  int64 ir_version = 1;
  repeated OperatorSetIdProto opset_import = 8;
  string producer_name = 2;
  string producer_version = 3;
  string domain = 4;
  int64 model_version = 5;
  string doc_string = 6;
  GraphProto graph = 7;
  repeated StringStringEntryProto metadata_props = 14;
}

message StringStringEntryProto {
  string key = 1;
  string value = 2;
}

message GraphProto {
  repeated NodeProto node = 1;
  string name = 2;
  repeated TensorProto initializer = 5;
  string doc_string = 10;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
  repeated ValueInfoProto value_info = 13;
  repeated StringStringEntryProto metadata_props = 16;
}

message TensorProto {
  repeated int64 dims = 1;
  int32 data_type = 2;
  repeated float float_data = 4;
  repeated int32 int32_data = 5;
  repeated bytes string_data = 6;
  repeated int64 int64_data = 7;
  string name = 8;
  string doc_string = 12;
  bytes raw_data = 9;
  repeated StringStringEntryProto external_data = 13;
  int32 data_location = 14;
  repeated double double_data = 10;
  repeated uint64 uint64_data = 11;
  repeated StringStringEntryProto metadata_props = 16;
}

message TensorShapeProto {
  message Dimension {
    oneof value {
      int64 dim_value = 1;
      string dim_param = 2;
    }
    string denotation = 3;
  }
  repeated Dimension dim = 1;
}

message TypeProto {
  message Tensor {
    int32 elem_type = 1;
    TensorShapeProto shape = 2;
  }
  oneof value {
    Tensor tensor_type = 1;
  }
  string denotation = 6;
}

message OperatorSetIdProto {
  string domain = 1;
  int64 version = 2;
}
`;

/** TensorProto.DataType values. */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16,
} as const;

/** AttributeProto.AttributeType values. */
export const AttributeType = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
} as const;

// Plain-object views of the messages. Field names keep onnx.proto's snake_case so they match
// the ONNX docs; every field is optional because protobuf omits defaults on the wire.
export interface StringStringEntryProto {
  key?: string;
  value?: string;
}
export interface OperatorSetIdProto {
  domain?: string;
  version?: number;
}
export interface Dimension {
  dim_value?: number;
  dim_param?: string;
  denotation?: string;
}
export interface TensorShapeProto {
  dim?: Dimension[];
}
export interface TypeProto {
  tensor_type?: { elem_type?: number; shape?: TensorShapeProto };
  denotation?: string;
}
export interface ValueInfoProto {
  name?: string;
  type?: TypeProto;
  doc_string?: string;
}
export interface TensorProto {
  dims?: number[];
  data_type?: number;
  float_data?: number[];
  int32_data?: number[];
  string_data?: Uint8Array[];
  int64_data?: number[];
  name?: string;
  doc_string?: string;
  raw_data?: Uint8Array;
  external_data?: StringStringEntryProto[];
  data_location?: number;
  double_data?: number[];
  uint64_data?: number[];
}
export interface AttributeProto {
  name?: string;
  type?: number;
  doc_string?: string;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  floats?: number[];
  ints?: number[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
}
export interface NodeProto {
  input?: string[];
  output?: string[];
  name?: string;
  op_type?: string;
  domain?: string;
  attribute?: AttributeProto[];
  doc_string?: string;
}
export interface GraphProto {
  node?: NodeProto[];
  name?: string;
  initializer?: TensorProto[];
  doc_string?: string;
  input?: ValueInfoProto[];
  output?: ValueInfoProto[];
  value_info?: ValueInfoProto[];
}
export interface ModelProto {
  ir_version?: number;
  opset_import?: OperatorSetIdProto[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: number;
  doc_string?: string;
  graph?: GraphProto;
  metadata_props?: StringStringEntryProto[];
}

// keepCase so decoded objects use the same names as onnx.proto and the interfaces above.
const root = protobuf.parse(ONNX_PROTO, { keepCase: true }).root;
const ModelType = root.lookupType('onnx.ModelProto');

/** Decodes ONNX model bytes into plain objects (int64 as JS numbers, bytes as Uint8Array). */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const message = ModelType.decode(bytes);
  return ModelType.toObject(message, { longs: Number, enums: Number }) as ModelProto;
}

/** Encodes a model to ONNX bytes. */
export function encodeModel(model: ModelProto): Uint8Array {
  // fromObject builds message instances (encode would otherwise trust arbitrary objects) and
  // converts plain numbers for int64 fields.
  return ModelType.encode(ModelType.fromObject(model as Record<string, unknown>)).finish();
}

/** Product of a tensor's dims (1 for a scalar). */
export function tensorSize(t: TensorProto): number {
  return (t.dims ?? []).reduce((a, b) => a * b, 1);
}

/** Reads a tensor's elements as numbers (int64 beyond 2^53 loses precision). */
export function tensorToNumbers(t: TensorProto): number[] {
  const type = t.data_type ?? DataType.UNDEFINED;
  if (t.data_location === 1 || (t.external_data?.length ?? 0) > 0) {
    throw new Error(`tensor ${t.name ?? ''} stores its data externally; not supported`);
  }
  const raw = t.raw_data;
  if (raw && raw.byteLength > 0) return rawToNumbers(raw, type);
  switch (type) {
    case DataType.FLOAT:
      return [...(t.float_data ?? [])];
    case DataType.DOUBLE:
      return [...(t.double_data ?? [])];
    case DataType.INT64:
      return [...(t.int64_data ?? [])];
    case DataType.UINT32:
    case DataType.UINT64:
      return [...(t.uint64_data ?? [])];
    // float16 travels in int32_data as its bit pattern, per onnx.proto.
    case DataType.FLOAT16:
      return (t.int32_data ?? []).map(fromFloat16Bits);
    default:
      return [...(t.int32_data ?? [])];
  }
}

function rawToNumbers(raw: Uint8Array, type: number): number[] {
  // DataView because raw_data is a view into the model buffer and may be unaligned.
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const read = (width: number, get: (offset: number) => number): number[] => {
    const out = new Array<number>(Math.floor(raw.byteLength / width));
    for (let i = 0; i < out.length; i++) out[i] = get(i * width);
    return out;
  };
  switch (type) {
    case DataType.FLOAT:
      return read(4, (o) => view.getFloat32(o, true));
    case DataType.DOUBLE:
      return read(8, (o) => view.getFloat64(o, true));
    case DataType.FLOAT16:
      return read(2, (o) => fromFloat16Bits(view.getUint16(o, true)));
    case DataType.INT64:
      return read(8, (o) => Number(view.getBigInt64(o, true)));
    case DataType.UINT64:
      return read(8, (o) => Number(view.getBigUint64(o, true)));
    case DataType.INT32:
      return read(4, (o) => view.getInt32(o, true));
    case DataType.UINT32:
      return read(4, (o) => view.getUint32(o, true));
    case DataType.INT16:
      return read(2, (o) => view.getInt16(o, true));
    case DataType.UINT16:
      return read(2, (o) => view.getUint16(o, true));
    case DataType.INT8:
      return read(1, (o) => view.getInt8(o));
    case DataType.UINT8:
    case DataType.BOOL:
      return read(1, (o) => view.getUint8(o));
    default:
      throw new Error(`raw_data of data_type ${type} is not supported`);
  }
}

/** Looks up a node attribute by name. */
export function getAttribute(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}

// A present attribute with a missing value field means the proto3 default (0, empty list),
// since writers omit default scalars on the wire; only an absent attribute takes `fallback`.

/** Integer attribute value, or `fallback` when the attribute is absent. */
export function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = getAttribute(node, name);
  return a ? (a.i ?? 0) : fallback;
}

/** Integer-list attribute value, or `fallback` when the attribute is absent. */
export function attrInts(node: NodeProto, name: string, fallback: number[]): number[] {
  const a = getAttribute(node, name);
  return a ? (a.ints ?? []) : fallback;
}

/** String attribute value decoded as UTF-8, or `fallback` when the attribute is absent. */
export function attrString(node: NodeProto, name: string, fallback: string): string {
  const a = getAttribute(node, name);
  return a ? new TextDecoder().decode(a.s ?? new Uint8Array()) : fallback;
}
