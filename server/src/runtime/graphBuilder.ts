import * as fs from 'node:fs';
import * as path from 'node:path';
import { widenBf16Into } from '../checkpoint/dtype';
import { AttributeType, ModelProto, OnnxDType, OnnxDTypeName } from './onnxSchema';

export type Dim = number | string;
/** Plain numbers are INT attributes; floats are spelled `{ float: x }` so 1.0 is never sent as an int. */
export type AttributeValue = number | string | number[] | { float: number } | { floats: number[] };

const OPSET = 17;
const IR_VERSION = 8;
/** onnxruntime parses models with protobuf, which refuses messages over 2 GiB; stay well below. */
export const DEFAULT_EXTERNAL_DATA_THRESHOLD = 1536 * 1024 * 1024;

/**
 * A lazy weight: its fp32 values, read when the graph is serialised. A reader of a checkpoint tensor stored
 * as bf16 can also hand over the stored bits (`bf16Bits`, undefined when the tensor is stored otherwise), so
 * that widening or int8 quantization runs on them without an fp32 copy of every tensor (runtime README,
 * "Loading a layer"); both give the same values bit for bit.
 */
export type WeightReader = (() => Promise<Float32Array>) & { bf16Bits?: () => Promise<Uint16Array | undefined> };
/** A weight's values, or how to get them: lazy weights are read one at a time while serialising. */
export type WeightData = Float32Array | WeightReader;
/** Values of an initializer of any of the dtypes we write (int8 for quantized weights). */
export type TensorValues = Float32Array | Int8Array | Uint8Array;

const BYTES_PER_ELEMENT: Record<OnnxDTypeName, number> = { float: 4, uint8: 1, int8: 1, int32: 4, int64: 8, bool: 1 };

interface NodeRecord {
  op_type: string;
  name: string;
  domain: string;
  input: string[];
  output: string[];
  attribute?: object[];
}

interface Initializer {
  name: string;
  dtype: OnnxDTypeName;
  dims: number[];
  data: Uint8Array | (() => Promise<TensorValues>) | WeightReader;
  /** Small constants stay inline: onnxruntime's shape inference cannot read shapes from external data. */
  inline: boolean;
}

/** Where a built model lives: in memory, or as an .onnx file with its weights in a side file. */
export type SerializedModel = { kind: 'bytes'; bytes: Uint8Array } | { kind: 'file'; modelPath: string; weightsPath: string };

/**
 * A tiny ONNX graph builder: nodes get fresh output names, constants are deduplicated, and weights are
 * kept as byte views or readers until serialisation, so with external data a layer is streamed to disk
 * one tensor at a time and never held in memory whole.
 */
export class GraphBuilder {
  private readonly nodes: NodeRecord[] = [];
  private readonly inputs: object[] = [];
  private readonly outputs: object[] = [];
  private readonly initializers: Initializer[] = [];
  private readonly constants = new Map<string, string>();
  /** Graph outputs by the value they export, resolved when serialising (nodes may still use the value). */
  private readonly outputNames = new Map<string, string[]>();
  private counter = 0;

  constructor(private readonly graphName: string) {}

  input(name: string, dtype: OnnxDTypeName, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, dtype, dims));
    return name;
  }

  /** Declares `value` as a graph output called `name`; any value can be exported (see `nodesWithOutputs`). */
  output(value: string, name: string, dtype: OnnxDTypeName, dims: Dim[]): void {
    this.outputNames.set(value, [...(this.outputNames.get(value) ?? []), name]);
    this.outputs.push(valueInfo(name, dtype, dims));
  }

  weight(name: string, data: WeightData, dims: number[]): string {
    return this.typedWeight(name, 'float', data, dims);
  }

  /** A weight of another dtype (int8 quantized values): written, lazily or not, exactly like a float one. */
  typedWeight(name: string, dtype: OnnxDTypeName, data: TensorValues | (() => Promise<TensorValues>), dims: number[]): string {
    this.initializers.push({ name, dtype, dims, data: typeof data === 'function' ? data : valueBytes(data), inline: false });
    return name;
  }

  constInt64(values: number[]): string {
    return this.constant('int64', values, () => new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer));
  }

  /** A 0-d int64 tensor (Range wants scalars). */
  scalarInt64(value: number): string {
    return this.constant('int64', [value], () => new Uint8Array(BigInt64Array.of(BigInt(value)).buffer), []);
  }

  constFloat(values: number[]): string {
    return this.constant('float', values, () => new Uint8Array(Float32Array.from(values).buffer));
  }

  /** Adds a node and returns its output names (`outputCount` fresh names). */
  node(opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, outputCount = 1, domain = ''): string[] {
    const id = this.counter++;
    const output = Array.from({ length: outputCount }, (_, i) => `${opType}_${id}_${i}`);
    this.nodes.push({ op_type: opType, input: inputs, output, name: `${opType}_${id}`, domain, attribute: Object.entries(attributes).map(([n, v]) => attribute(n, v)) });
    return output;
  }

  /** One-output shorthand for `node`. */
  op(opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, domain = ''): string {
    return this.node(opType, inputs, attributes, 1, domain)[0];
  }

  /**
   * The nodes with graph outputs wired in. A value a node produces is renamed to its (first) output name,
   * everywhere, rather than copied through an Identity: each copy of a [tokens, hidden] output is a memory
   * pass per layer. Graph inputs, constants and second names for one value still go through Identity.
   */
  private nodesWithOutputs(): NodeRecord[] {
    const renames = new Map<string, string>();
    const copies: NodeRecord[] = [];
    for (const [value, names] of this.outputNames) {
      const produced = this.nodes.some((n) => n.output.includes(value));
      names.forEach((name, i) => {
        if (produced && i === 0) renames.set(value, name);
        else copies.push({ op_type: 'Identity', input: [value], output: [name], name: `out_${name}`, domain: '' });
      });
    }
    const rename = (v: string) => renames.get(v) ?? v;
    return [...this.nodes, ...copies].map((n) => ({ ...n, input: n.input.map(rename), output: n.output.map(rename) }));
  }

  weightBytes(): number {
    return this.initializers.reduce((sum, init) => sum + BYTES_PER_ELEMENT[init.dtype] * elementCount(init.dims), 0);
  }

  /**
   * Serialises the model. Above `externalDataThreshold` bytes of weights, the weights go to a side file
   * next to `<externalDataDir>/<graph name>.onnx` (ONNX external data) because protobuf cannot hold them.
   */
  async serialize(options: { externalDataDir?: string; externalDataThreshold?: number } = {}): Promise<SerializedModel> {
    const threshold = options.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD;
    const external = this.weightBytes() > threshold;
    if (external && !options.externalDataDir) throw new Error(`graph ${this.graphName}: weights exceed ${threshold} bytes and no external data folder was given`);
    let tensors: object[];
    let dataFile: string | undefined;
    if (external) {
      const dataName = `${this.graphName}.weights`;
      dataFile = path.join(options.externalDataDir!, dataName);
      tensors = await writeExternalData(this.initializers, dataFile, dataName);
    } else {
      tensors = [];
      for (const init of this.initializers) tensors.push(tensorProto(init, await bytesOf(init)));
    }
    const model = {
      ir_version: IR_VERSION,
      producer_name: 'moe-studio',
      opset_import: [{ domain: '', version: OPSET }, { domain: 'com.microsoft', version: 1 }],
      graph: { name: this.graphName, node: this.nodesWithOutputs(), initializer: tensors, input: this.inputs, output: this.outputs },
    };
    // Plain objects with numeric enums encode directly; fromObject would only add a pass over the weights.
    const bytes = ModelProto.encode(model).finish();
    if (!external) return { kind: 'bytes', bytes };
    const modelPath = path.join(options.externalDataDir!, `${this.graphName}.onnx`);
    fs.writeFileSync(modelPath, bytes);
    return { kind: 'file', modelPath, weightsPath: dataFile! };
  }

  private constant(dtype: OnnxDTypeName, values: number[], toBytes: () => Uint8Array, dims = [values.length]): string {
    const key = `${dtype}[${dims}]:${values.join(',')}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_${this.constants.size}`;
      this.initializers.push({ name, dtype, dims, data: toBytes(), inline: true });
      this.constants.set(key, name);
    }
    return name;
  }
}

async function writeExternalData(initializers: Initializer[], dataFile: string, location: string): Promise<object[]> {
  const fd = fs.openSync(dataFile, 'w');
  // Tensor k+1 is read from the checkpoint (in libuv's thread pool) while tensor k is written. Widened bf16
  // tensors take turns in two reused buffers: one fresh fp32 array per tensor cost as much in page faults
  // and garbage collection as the widening itself.
  const widened = [new WideningBuffer(), new WideningBuffer()];
  const external = initializers.filter((init) => !init.inline);
  const startReading = (k: number): Promise<Uint8Array> | undefined => {
    if (k >= external.length) return undefined;
    const bytes = bytesOf(external[k], widened[k % 2]);
    bytes.catch(() => undefined); // awaited in turn below; a failure ahead of that is not unhandled
    return bytes;
  };
  try {
    let offset = 0;
    let k = 0;
    let reading = startReading(0);
    const tensors: object[] = [];
    for (const init of initializers) {
      if (init.inline) {
        tensors.push(tensorProto(init, await bytesOf(init)));
        continue;
      }
      const bytes = await reading!;
      reading = startReading(++k);
      // Page alignment lets onnxruntime memory-map each tensor in place instead of copying it.
      offset = Math.ceil(offset / 4096) * 4096;
      fs.writeSync(fd, bytes, 0, bytes.byteLength, offset);
      tensors.push({
        name: init.name,
        data_type: OnnxDType[init.dtype],
        dims: init.dims,
        data_location: 1,
        external_data: [
          { key: 'location', value: location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(bytes.byteLength) },
        ],
      });
      offset += bytes.byteLength;
    }
    return tensors;
  } finally {
    fs.closeSync(fd);
  }
}

/** A reusable fp32 buffer that bf16 bits are widened into. */
class WideningBuffer {
  private values = new Float32Array(0);

  widen(bits: Uint16Array): Uint8Array {
    if (this.values.length < bits.length) this.values = new Float32Array(bits.length);
    widenBf16Into(bits, this.values);
    return new Uint8Array(this.values.buffer, 0, bits.length * 4);
  }
}

function tensorProto(init: Initializer, bytes: Uint8Array): object {
  return { name: init.name, data_type: OnnxDType[init.dtype], dims: init.dims, raw_data: bytes };
}

/** The initializer's bytes; a float weight stored as bf16 is widened into `widening` when one is given. */
async function bytesOf(init: Initializer, widening?: WideningBuffer): Promise<Uint8Array> {
  const bits = widening && init.dtype === 'float' && typeof init.data === 'function' ? await (init.data as WeightReader).bf16Bits?.() : undefined;
  const bytes = bits ? widening!.widen(bits) : typeof init.data === 'function' ? valueBytes(await init.data()) : init.data;
  const size = BYTES_PER_ELEMENT[init.dtype];
  if (bytes.byteLength !== size * elementCount(init.dims)) throw new Error(`weight ${init.name}: ${bytes.byteLength / size} values for shape [${init.dims}]`);
  return bytes;
}

function valueBytes(data: TensorValues): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function elementCount(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function valueInfo(name: string, dtype: OnnxDTypeName, dims: Dim[]): object {
  const dim = dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d }));
  return { name, type: { tensor_type: { elem_type: OnnxDType[dtype], shape: { dim } } } };
}

function attribute(name: string, value: AttributeValue): object {
  if (typeof value === 'string') return { name, type: AttributeType.string, s: Buffer.from(value) };
  if (Array.isArray(value)) return { name, type: AttributeType.ints, ints: value };
  if (typeof value === 'number') return { name, type: AttributeType.int, i: value };
  if ('floats' in value) return { name, type: AttributeType.floats, floats: value.floats };
  return { name, type: AttributeType.float, f: value.float };
}
