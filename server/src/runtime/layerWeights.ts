import type { FusedExpertNames, LayerSpec, MlpTensorNames, ModelSpec, WeightSource } from '../checkpoint/modelSpec';
import { mxfp4RoundTrip } from '../checkpoint/mxfp4';
import { gptOssExpert } from './gptOssExperts';
import type { WeightData, WeightReader } from './graphBuilder';
import { mergeTermOrder, type NeuronOrder, permuteColumns, permuteRows } from './neuronOrder';

/** A SwiGLU MLP's weights in HF layout: gate/up [intermediate, hidden], down [hidden, intermediate]; GPT-OSS experts have biases too. */
export interface MlpWeights {
  gate: WeightData;
  up: WeightData;
  down: WeightData;
  gateBias?: WeightData;
  upBias?: WeightData;
  downBias?: WeightData;
}

/**
 * One decoder layer's weights, fp32, in HF layout (y = x W^T). Each is a reader, not the values: the graph
 * builder reads them one at a time while writing the model, so a whole layer is never in memory at once.
 */
export interface LayerWeights {
  inputNorm: WeightData;
  postAttentionNorm: WeightData;
  q: WeightData;
  k: WeightData;
  v: WeightData;
  o: WeightData;
  qBias?: WeightData;
  kBias?: WeightData;
  vBias?: WeightData;
  qNorm?: WeightData;
  kNorm?: WeightData;
  oBias?: WeightData;
  sinks?: WeightData;
  inputNormBias?: WeightData;
  postAttentionNormBias?: WeightData;
  /** Multi-head latent attention (DeepSeek): q (or q_a, its norm, q_b), kv_a_proj_with_mqa, kv_a_layernorm, kv_b. */
  mla?: { q?: WeightData; qA?: WeightData; qANorm?: WeightData; qB?: WeightData; kvA: WeightData; kvANorm: WeightData; kvB: WeightData };
  router?: WeightData;
  /** GPT-OSS's router bias [E], added to the logits. */
  routerBias?: WeightData;
  /** DeepSeek V3's e_score_correction_bias [E], for the choice only. */
  correctionBias?: WeightData;
  experts?: MlpWeights[];
  sharedExpert?: MlpWeights;
  sharedExpertGate?: WeightData;
  mlp?: MlpWeights;
}

export function layerWeights(spec: ModelSpec, source: WeightSource, layer: LayerSpec): LayerWeights {
  const names = spec.tensors.layer(layer.index);
  const reader = (name: string) => tensorReader(source, name);
  const optional = (name: string | undefined) => (name ? reader(name) : undefined);
  const mlp = (m: MlpTensorNames): MlpWeights => ({ gate: reader(m.gate), up: reader(m.up), down: reader(m.down) });
  return {
    inputNorm: reader(names.inputNorm),
    postAttentionNorm: reader(names.postAttentionNorm),
    q: reader(names.q),
    k: reader(names.k),
    v: reader(names.v),
    o: reader(names.o),
    qBias: optional(names.qBias),
    kBias: optional(names.kBias),
    vBias: optional(names.vBias),
    qNorm: optional(names.qNorm),
    kNorm: optional(names.kNorm),
    oBias: optional(names.oBias),
    sinks: optional(names.sinks),
    inputNormBias: optional(names.inputNormBias),
    postAttentionNormBias: optional(names.postAttentionNormBias),
    ...(names.mla && {
      mla: { q: optional(names.mla.q), qA: optional(names.mla.qA), qANorm: optional(names.mla.qANorm), qB: optional(names.mla.qB), kvA: reader(names.mla.kvA), kvANorm: reader(names.mla.kvANorm), kvB: reader(names.mla.kvB) },
    }),
    router: optional(names.router),
    routerBias: optional(names.routerBias),
    correctionBias: optional(names.correctionBias),
    experts: layer.kind === 'moe' ? Array.from({ length: layer.moe.numExperts }, (_, j) => expertWeights(spec, source, names, layer.moe.expert.intermediateSize, j)) : undefined,
    sharedExpert: names.sharedExpert && mlp(names.sharedExpert),
    sharedExpertGate: optional(names.sharedExpertGate),
    mlp: names.mlp && mlp(names.mlp),
  };
}

function expertWeights(spec: ModelSpec, source: WeightSource, names: ReturnType<ModelSpec['tensors']['layer']>, intermediate: number, j: number): MlpWeights {
  if (names.fusedExperts?.layout === 'interleavedInOut') return gptOssExpert(source, names.fusedExperts, spec.hiddenSize, intermediate, j);
  if (names.fusedExperts) return fusedExpert(spec, source, names.fusedExperts, intermediate, j);
  const m = names.expert!(j);
  return { gate: tensorReader(source, m.gate), up: tensorReader(source, m.up), down: tensorReader(source, m.down) };
}

/** Expert j of a fused layer, read as three ranges of the two tensors so no reader ever holds all experts. */
function fusedExpert(spec: ModelSpec, source: WeightSource, names: FusedExpertNames, intermediate: number, j: number): MlpWeights {
  const slab = intermediate * spec.hiddenSize;
  const range = (name: string, offset: number): WeightData => () => source.readFloat32Range(name, offset, slab);
  return { gate: range(names.gateUp, 2 * j * slab), up: range(names.gateUp, (2 * j + 1) * slab), down: range(names.down, j * slab) };
}

/**
 * Experts of a merged layer: new expert i = Σ_j mergeMatrix[i][j] · expert j, for gate, up and down alike;
 * with `outputScale`, new expert i's down projection is also multiplied by outputScale[i] (which scales its
 * output exactly, since the down projection is linear); with `neuronOrder`, an expert combined with others
 * has its intermediate neurons renumbered first (neuronOrder.ts), which leaves its function unchanged.
 */
export function mergeExperts(experts: MlpWeights[], mergeMatrix: number[][], options: MergeOptions = {}): MlpWeights[] {
  const { outputScale, mxfp4, neuronOrder } = options;
  return mergeMatrix.map((row, i) => {
    // An MXFP4 checkpoint stores a merged (or rescaled) expert re-encoded (export/hfExport.ts): evaluate exactly that.
    const copyOf = row.filter((c) => c !== 0).length === 1 && row.includes(1) && (outputScale?.[i] ?? 1) === 1;
    const stored = (values: Float32Array, rows: number, inputs: number) => (mxfp4 && !copyOf ? mxfp4RoundTrip(values, rows, inputs) : values);
    const combine = (pick: (e: MlpWeights) => WeightData, scale: number, axis: 'rows' | 'columns' | 'none', shape?: [number, number]): WeightData => async () => {
      let out: Float32Array | undefined;
      for (const [j, coefficient] of row.entries()) {
        if (coefficient === 0) continue;
        const order = axis === 'none' ? undefined : mergeTermOrder(row, j, neuronOrder);
        const read = await resolveWeight(pick(experts[j]));
        const source = !order ? read : axis === 'rows' ? permuteRows(read, order, read.length / order.length) : permuteColumns(read, order);
        out ??= new Float32Array(source.length);
        const c = coefficient * scale;
        for (let x = 0; x < out.length; x++) out[x] += c * source[x];
      }
      const values = out ?? new Float32Array((await resolveWeight(pick(experts[0]))).length);
      return shape ? stored(values, shape[0], shape[1]) : values;
    };
    const scale = outputScale?.[i] ?? 1;
    const [I, H] = mxfp4 ? [mxfp4.intermediate, mxfp4.hidden] : [0, 0];
    const merged: MlpWeights = {
      gate: combine((e) => e.gate, 1, 'rows', mxfp4 && [I, H]),
      up: combine((e) => e.up, 1, 'rows', mxfp4 && [I, H]),
      down: combine((e) => e.down, scale, 'columns', mxfp4 && [H, I]),
    };
    // Biases combine like their weights (GPT-OSS); the down bias is part of the output the scale multiplies.
    // A gate or up bias has one value per neuron (rows of width 1) and follows its neurons; the down bias does not.
    if (experts[0].gateBias) Object.assign(merged, { gateBias: combine((e) => e.gateBias!, 1, 'rows'), upBias: combine((e) => e.upBias!, 1, 'rows'), downBias: combine((e) => e.downBias!, scale, 'none') });
    return merged;
  });
}

export interface MergeOptions {
  /** Per merged row: its down projection times this (output compensation). */
  outputScale?: number[];
  /** The layer's experts are MXFP4: merged ones are evaluated re-encoded. */
  mxfp4?: MergedMxfp4;
  /** Neuron orders of experts that are merged (UNCURL's alignment). */
  neuronOrder?: NeuronOrder;
}

/** The expert shape of an MXFP4 checkpoint's layer, whose merged experts are re-encoded (absent: stored as floats). */
export interface MergedMxfp4 {
  hidden: number;
  intermediate: number;
}

export function mergedMxfp4(spec: ModelSpec, layer: LayerSpec): MergedMxfp4 | undefined {
  return spec.expertEncoding === 'mxfp4' && layer.kind === 'moe' ? { hidden: spec.hiddenSize, intermediate: layer.moe.expert.intermediateSize } : undefined;
}

export function resolveWeight(data: WeightData): Promise<Float32Array> {
  return typeof data === 'function' ? data() : Promise.resolve(data);
}

/** A checkpoint tensor as a lazy weight that can also hand over its stored bf16 bits. */
export function tensorReader(source: WeightSource, name: string): WeightReader {
  return Object.assign(() => source.readFloat32(name), { bf16Bits: () => storedBf16Bits(source, name) });
}

/** The tensor's stored bits when it is stored as bf16 (see WeightReader); undefined for any other dtype. */
export async function storedBf16Bits(source: WeightSource, name: string): Promise<Uint16Array | undefined> {
  if (source.info(name).dtype !== 'BF16') return undefined;
  const bytes = await source.readRaw(name);
  return bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2) : new Uint16Array(bytes.slice().buffer);
}
