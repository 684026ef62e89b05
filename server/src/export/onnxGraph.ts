/**
 * The whole pruned model as one ONNX graph, composed from the runtime's own graphs: the runtime's
 * decoder-layer and head builders produce each part exactly as the runtime runs it; this module adds
 * the embedding lookup, RoPE tables and the attention bias (which the runtime computes in JS) as graph
 * nodes, bakes the plan's per-layer inputs in as constants, prefixes every part's names and stitches
 * the parts together. Nothing of the runtime is copied: a fix there is a fix here.
 *
 * Every op is a standard ONNX op (opset 17); the composed model imports no other domain.
 */

import type { ModelSpec, WeightSource } from '../checkpoint/modelSpec';
import { GraphBuilder } from '../runtime/graphBuilder';
import { buildHeadGraph, headBiases, HeadIO } from '../runtime/headGraph';
import { buildLayerGraph, LayerIO } from '../runtime/layerGraph';
import { layerWeights, mergedMxfp4, mergeExperts } from '../runtime/layerWeights';
import { ModelProto, OnnxDType } from '../runtime/onnxSchema';
import { scaledRopeFrequencies } from '../runtime/ropeScaling';
import { resolveLayerPlan, type ResolvedLayerPlan } from '../runtime/runtimePlan';
import { rotaryDimOf } from '../runtime/positionTables';
import type { ResolvedExportPlan } from './exportPlan';

export const OnnxModelIO = {
  inputIds: 'input_ids', // [batch, seq] int64
  attentionMask: 'attention_mask', // [batch, seq] int64: 1 for tokens, 0 for padding
  logits: 'logits', // [batch, seq, vocab]
  /** [batch * seq, E'] per MoE layer: router logits after the plan's mapping (as HF returns them). */
  routerLogits: (layer: number) => `router_logits_${layer}`,
} as const;

/** HF masks with the most negative float, not -inf: a query row with no visible key (left padding) then stays finite. */
const MASKED = -3.4028234663852886e38;

export interface TensorRecord {
  name: string;
  data_type: number;
  dims: number[];
  raw_data?: Uint8Array;
  external_data?: { key: string; value: string }[];
  data_location?: number;
}

interface NodeRecord {
  input: string[];
  output: string[];
  name: string;
  op_type: string;
  domain?: string;
  attribute?: unknown[];
}

interface ValueInfoRecord {
  name: string;
  type: unknown;
}

export interface ModelRecord {
  ir_version: number;
  producer_name?: string;
  opset_import: { domain: string; version: number }[];
  graph: { name: string; node: NodeRecord[]; initializer: TensorRecord[]; input: ValueInfoRecord[]; output: ValueInfoRecord[] };
}

/** One runtime graph to splice in: its inputs bound to values of the composed graph or to baked constants. */
export interface GraphPart {
  /** Prefix for every name of the part ('' for the frame, whose inputs and outputs are the model's). */
  prefix: string;
  builder: GraphBuilder;
  /** Part input name -> composed value name. */
  bindings: Record<string, string>;
  /** Constants that replace part inputs (already named as `bindings` says). */
  baked: TensorRecord[];
}

export interface ComposedGraphPlan {
  parts: GraphPart[];
  /** Every weight, in bytes as fp32 (the export's size). */
  weightBytes: number;
}

/**
 * The parts of the exported model, weights still unread. Planned MoE layers get E' experts (kept or merged,
 * built by the runtime's `mergeExperts`) and their router mapping, top-k and adaptive threshold as constants.
 */
export function planComposedGraph(spec: ModelSpec, weights: WeightSource, resolved: ResolvedExportPlan, adaptiveThresholds: Record<number, number | undefined>, routerLogits: boolean): ComposedGraphPlan {
  const H = spec.hiddenSize;
  const V = spec.vocabSize;
  const frame = new GraphBuilder('model');
  const ids = frame.input(OnnxModelIO.inputIds, 'int64', ['batch', 'seq']);
  const mask = frame.input(OnnxModelIO.attentionMask, 'int64', ['batch', 'seq']);
  const headPrefix = 'head/';
  // Tied embeddings: the head's lm_head is the embedding table, so the lookup reads that one initializer.
  const embedding = spec.tensors.lmHead ? frame.weight('embed_tokens', () => weights.readFloat32(spec.tensors.embedTokens), [V, H]) : `${headPrefix}lm_head`;
  const embedded = frame.op('Gather', [embedding, ids], { axis: 0 });

  // RoPE at position = number of real tokens before (0 for the first), so left padding works as in HF generate.
  const { ropeTheta, ropeScaling } = spec.attention;
  const headDim = rotaryDimOf(spec.attention);
  const seqLength = frame.op('Gather', [frame.op('Shape', [ids]), frame.scalarInt64(1)], { axis: 0 });
  const maskFloat = frame.op('Cast', [mask], { to: OnnxDType.float });
  const positions = frame.op('Max', [frame.op('Sub', [frame.op('CumSum', [maskFloat, frame.scalarInt64(1)]), frame.constFloat([1])]), frame.constFloat([0])]);
  // Scaled RoPE (ropeScaling.ts): YaRN's frequencies and factor are constants; LongRoPE's switch to the long
  // factors when the input is longer than original_max_position_embeddings, as the runtime's tables do.
  const ropeAt = (length: number) => (ropeScaling ? scaledRopeFrequencies(headDim, ropeTheta, length, ropeScaling) : { invFreq: inverseFrequencies(headDim, ropeTheta), factor: 1 });
  let invFreq = frame.constFloat([...ropeAt(1).invFreq]);
  let ropeFactor = frame.constFloat([ropeAt(1).factor]);
  if (ropeScaling?.type === 'longrope') {
    const long = ropeAt(ropeScaling.originalMaxPositions + 1);
    const isLong = frame.op('Greater', [seqLength, frame.scalarInt64(ropeScaling.originalMaxPositions)]);
    invFreq = frame.op('Where', [isLong, frame.constFloat([...long.invFreq]), invFreq]);
    ropeFactor = frame.op('Where', [isLong, frame.constFloat([long.factor]), ropeFactor]);
  }
  const angles = frame.op('Mul', [frame.op('Unsqueeze', [positions, frame.constInt64([2])]), invFreq]);
  const doubled = frame.op('Concat', [angles, angles], { axis: -1 });
  const cos = frame.op('Unsqueeze', [frame.op('Mul', [frame.op('Cos', [doubled]), ropeFactor]), frame.constInt64([1])]);
  const sin = frame.op('Unsqueeze', [frame.op('Mul', [frame.op('Sin', [doubled]), ropeFactor]), frame.constInt64([1])]);

  // Causal, and padding never visible as a key: [batch, 1, 1, seq, seq] as the layer graphs add it.
  const steps = frame.op('Range', [frame.scalarInt64(0), seqLength, frame.scalarInt64(1)]);
  const causal = frame.op('LessOrEqual', [frame.op('Unsqueeze', [steps, frame.constInt64([0])]), frame.op('Unsqueeze', [steps, frame.constInt64([1])])]);
  const visibleKeys = frame.op('Unsqueeze', [frame.op('Cast', [mask], { to: OnnxDType.bool }), frame.constInt64([1, 2, 3])]);
  const attentionBias = frame.op('Where', [frame.op('And', [causal, visibleKeys]), frame.constFloat([0]), frame.constFloat([MASKED])]);

  // The layers take tokens as rows and attention's grid; here every (batch, position) is a token, padding
  // included (left padding keeps HF generate's layout), so both maps are the identity.
  const gridSize = frame.op('ReduceProd', [frame.op('Shape', [ids])], { keepdims: 0 });
  const identityRows = frame.op('Range', [frame.scalarInt64(0), gridSize, frame.scalarInt64(1)]);

  const parts: GraphPart[] = [];
  const planned = new Map(resolved.layers.map((layer) => [layer.index, layer]));
  let hidden = frame.op('Reshape', [embedded, frame.constInt64([-1, H])]);
  for (const layer of spec.layers) {
    const prefix = `layer${layer.index}/`;
    const layerWeightSet = layerWeights(spec, weights, layer);
    const bindings: Record<string, string> = {
      [LayerIO.hidden]: hidden,
      [LayerIO.tokenSlots]: identityRows,
      [LayerIO.gridRows]: identityRows,
      [LayerIO.ropeCos]: cos,
      [LayerIO.ropeSin]: sin,
      [LayerIO.attentionBias]: attentionBias,
    };
    let baked: TensorRecord[] = [];
    let experts;
    if (layer.kind === 'moe') {
      const layerPlan = planned.get(layer.index);
      const runtimePlan = layerPlan?.planned
        ? resolveLayerPlan(layer.index, layer.moe, { routerMap: layerPlan.routerRows, mergeMatrix: layerPlan.expertRows, outputScale: layerPlan.outputScale, neuronOrder: layerPlan.neuronOrder, topK: layerPlan.topK, adaptiveThreshold: adaptiveThresholds[layer.index] })
        : resolveLayerPlan(layer.index, layer.moe, { adaptiveThreshold: adaptiveThresholds[layer.index] });
      if (runtimePlan.mergeMatrix) experts = mergeExperts(layerWeightSet.experts!, runtimePlan.mergeMatrix, { outputScale: runtimePlan.outputScale, neuronOrder: runtimePlan.neuronOrder, mxfp4: mergedMxfp4(spec, layer) });
      baked = bakedPlanInputs(prefix, layer.moe.numExperts, runtimePlan);
      for (const tensor of baked) bindings[tensor.name.slice(prefix.length)] = tensor.name;
      if (routerLogits) frame.output(`${prefix}${LayerIO.routerLogits}`, OnnxModelIO.routerLogits(layer.index), 'float', ['tokens', runtimePlan.routedExperts]);
    }
    parts.push({ prefix, builder: buildLayerGraph(spec, layer, layerWeightSet, experts, { portable: true }), bindings, baked });
    hidden = `${prefix}${LayerIO.hiddenOut}`;
  }

  const lmHead = spec.tensors.lmHead ?? spec.tensors.embedTokens;
  const head = buildHeadGraph(spec, () => weights.readFloat32(spec.tensors.finalNorm), () => weights.readFloat32(lmHead), headBiases(spec, weights));
  // The head's loss branch needs targets; it is pruned with everything else no output uses.
  parts.push({ prefix: headPrefix, builder: head, bindings: { [HeadIO.hidden]: frame.op('Reshape', [hidden, frame.constInt64([-1, H])]), [HeadIO.targets]: 'unused/targets' }, baked: [] });
  const logitsShape = frame.op('Concat', [frame.op('Shape', [ids]), frame.constInt64([V])], { axis: 0 });
  frame.output(frame.op('Reshape', [`${headPrefix}${HeadIO.logits}`, logitsShape]), OnnxModelIO.logits, 'float', ['batch', 'seq', V]);

  parts.unshift({ prefix: '', builder: frame, bindings: {}, baked: [] });
  return { parts, weightBytes: parts.reduce((sum, part) => sum + part.builder.weightBytes(), 0) };
}

/** HF's fp32 `inv_freq`, the same values runtime/positionTables.ts builds its tables from. */
function inverseFrequencies(headDim: number, theta: number): Float32Array {
  return Float32Array.from({ length: headDim / 2 }, (_, i) => Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / headDim)))));
}

function bakedPlanInputs(prefix: string, numExperts: number, plan: ResolvedLayerPlan): TensorRecord[] {
  const float = (name: string, values: Float32Array, dims: number[]): TensorRecord => ({ name: prefix + name, data_type: OnnxDType.float, dims, raw_data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
  return [
    float(LayerIO.routerMap, plan.routerMapTransposed, [numExperts, plan.routedExperts]),
    float(LayerIO.expertBias, plan.expertBias, [plan.routedExperts]),
    { name: prefix + LayerIO.topK, data_type: OnnxDType.int64, dims: [1], raw_data: new Uint8Array(BigInt64Array.of(BigInt(plan.topK)).buffer) },
    float(LayerIO.adaptiveThreshold, Float32Array.of(plan.adaptiveThreshold), [1]),
  ];
}

export function decodeModel(bytes: Uint8Array): ModelRecord {
  return ModelProto.toObject(ModelProto.decode(bytes), { longs: Number, arrays: true }) as ModelRecord;
}

/** A serialised part's graph with its names prefixed and its inputs bound to the composed graph's values. */
export function renamePart(part: GraphPart, model: ModelRecord): ModelRecord['graph'] {
  const rename = (name: string) => (name === '' ? '' : (part.bindings[name] ?? part.prefix + name));
  const graph = model.graph;
  if (part.prefix === '') return graph;
  return {
    name: graph.name,
    node: graph.node.map((node) => ({ ...node, name: part.prefix + node.name, input: node.input.map(rename), output: node.output.map(rename) })),
    initializer: [...graph.initializer.map((tensor) => ({ ...tensor, name: rename(tensor.name) })), ...part.baked],
    input: [],
    output: [],
  };
}

/**
 * The composed graph: the frame's inputs and outputs, every part's nodes and initializers, minus what no
 * output needs (the runtime graphs' capture outputs and the head's loss), in topological order.
 */
export function composeGraph(frame: ModelRecord, graphs: ModelRecord['graph'][]): ModelRecord {
  const nodes = graphs.flatMap((graph) => graph.node);
  const initializers = graphs.flatMap((graph) => graph.initializer);
  const producer = new Map<string, NodeRecord>();
  for (const node of nodes) for (const output of node.output) producer.set(output, node);
  const needed = new Set<string>();
  const used = new Set<NodeRecord>();
  const pending = frame.graph.output.map((output) => output.name);
  while (pending.length) {
    const value = pending.pop()!;
    if (needed.has(value)) continue;
    needed.add(value);
    const node = producer.get(value);
    if (node && !used.has(node)) {
      used.add(node);
      pending.push(...node.input.filter((input) => input !== ''));
    }
  }
  const kept = nodes.filter((node) => used.has(node));
  const domains = new Set(kept.map((node) => node.domain ?? ''));
  return {
    ir_version: frame.ir_version,
    producer_name: 'moe-studio',
    opset_import: frame.opset_import.filter((opset) => domains.has(opset.domain)),
    graph: {
      name: 'moe_studio_model',
      node: topologicalOrder(kept, [...frame.graph.input.map((input) => input.name), ...initializers.map((tensor) => tensor.name)]),
      initializer: initializers.filter((tensor) => needed.has(tensor.name)),
      input: frame.graph.input,
      output: frame.graph.output,
    },
  };
}

/** Kahn's algorithm, stable in the given order; a value nothing produces is a composition bug. */
function topologicalOrder(nodes: NodeRecord[], available: string[]): NodeRecord[] {
  const ready = new Set(available);
  const missing = new Map<NodeRecord, number>();
  const consumers = new Map<string, NodeRecord[]>();
  const queue: NodeRecord[] = [];
  for (const node of nodes) {
    const inputs = [...new Set(node.input.filter((input) => input !== '' && !ready.has(input)))];
    missing.set(node, inputs.length);
    for (const input of inputs) (consumers.get(input) ?? consumers.set(input, []).get(input)!).push(node);
    if (inputs.length === 0) queue.push(node);
  }
  const ordered: NodeRecord[] = [];
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i];
    ordered.push(node);
    for (const output of node.output) {
      for (const consumer of consumers.get(output) ?? []) {
        const left = missing.get(consumer)! - 1;
        missing.set(consumer, left);
        if (left === 0) queue.push(consumer);
      }
      consumers.delete(output);
    }
  }
  if (ordered.length !== nodes.length) {
    const stuck = nodes.find((node) => missing.get(node)! > 0)!;
    throw new Error(`composed ONNX graph: node ${stuck.name} waits for a value nothing produces (${stuck.input.join(', ')})`);
  }
  return ordered;
}

export function encodeModel(model: ModelRecord): Uint8Array {
  return ModelProto.encode(model).finish();
}
