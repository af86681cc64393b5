/**
 * Writes small ONNX models (ModelProto bytes) built in code: a graph of nodes over named inputs,
 * no initializers. Only the protobuf fields such graphs need are written (onnx.proto field
 * numbers); what ONNX Runtime reads from them is checked by the tests that run the graphs.
 */

/** ONNX TensorProto.DataType codes of the element types the engine's caches use. */
export const ONNX_ELEM = { float32: 1, int64: 7, float16: 10 } as const;
export type OnnxElem = keyof typeof ONNX_ELEM;

export interface OnnxNode {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  /** Integer attributes (e.g. Concat's axis). */
  ints?: Record<string, number>;
}

export interface OnnxValue {
  name: string;
  elem: OnnxElem;
  /** Each dim a size, or a name for a symbolic one. */
  shape: readonly (number | string)[];
}

export interface OnnxGraph {
  name: string;
  opset: number;
  inputs: readonly OnnxValue[];
  outputs: readonly OnnxValue[];
  nodes: readonly OnnxNode[];
}

class Writer {
  private readonly bytes: number[] = [];

  private varint(v: number): void {
    let n = v;
    while (n > 0x7f) {
      this.bytes.push((n & 0x7f) | 0x80);
      n = Math.floor(n / 128);
    }
    this.bytes.push(n);
  }

  private key(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  int(field: number, v: number): this {
    if (!Number.isInteger(v) || v < 0) throw new Error(`onnx-writer: ${v} is not a non-negative integer`);
    this.key(field, 0);
    this.varint(v);
    return this;
  }

  bytesField(field: number, data: Uint8Array | readonly number[]): this {
    this.key(field, 2);
    this.varint(data.length);
    for (const b of data) this.bytes.push(b);
    return this;
  }

  str(field: number, s: string): this {
    return this.bytesField(field, new TextEncoder().encode(s));
  }

  msg(field: number, build: (w: Writer) => void): this {
    const inner = new Writer();
    build(inner);
    return this.bytesField(field, inner.bytes);
  }

  done(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

// ValueInfoProto { name = 1; type = 2 } / TypeProto { tensor_type = 1 } /
// TypeProto.Tensor { elem_type = 1; shape = 2 } / TensorShapeProto { dim = 1 } /
// Dimension { dim_value = 1; dim_param = 2 }
function valueInfo(w: Writer, v: OnnxValue): void {
  w.str(1, v.name).msg(2, (t) =>
    t.msg(1, (tt) =>
      tt.int(1, ONNX_ELEM[v.elem]).msg(2, (s) => {
        for (const d of v.shape) s.msg(1, (dim) => (typeof d === "number" ? dim.int(1, d) : dim.str(2, d)));
      }),
    ),
  );
}

/** The model's bytes, for `InferenceSession.create`. */
export function writeOnnxModel(g: OnnxGraph): Uint8Array {
  // ModelProto { ir_version = 1; producer_name = 2; graph = 7; opset_import = 8 }
  return (
    new Writer()
      .int(1, 8)
      .str(2, "stagebeam")
      .msg(7, (graph) => {
        // GraphProto { node = 1; name = 2; input = 11; output = 12 }
        for (const n of g.nodes) {
          // NodeProto { input = 1; output = 2; op_type = 4; attribute = 5 }
          graph.msg(1, (node) => {
            for (const i of n.inputs) node.str(1, i);
            for (const o of n.outputs) node.str(2, o);
            node.str(4, n.op);
            // AttributeProto { name = 1; i = 3; type = 20 (INT = 2) }
            for (const [name, v] of Object.entries(n.ints ?? {})) node.msg(5, (a) => a.str(1, name).int(3, v).int(20, 2));
          });
        }
        graph.str(2, g.name);
        for (const v of g.inputs) graph.msg(11, (w) => valueInfo(w, v));
        for (const v of g.outputs) graph.msg(12, (w) => valueInfo(w, v));
      })
      // OperatorSetIdProto { domain = 1; version = 2 }: the default domain.
      .msg(8, (o) => o.str(1, "").int(2, g.opset))
      .done()
  );
}
