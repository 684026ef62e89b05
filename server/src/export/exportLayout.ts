/**
 * The exported checkpoint as a list of tensors, each described by where its bytes come from. Preview
 * and export share this one description, so what the preview shows is exactly what gets written.
 *
 * A tensor is a sequence of segments: a raw byte range of a source tensor (bit-exact copies, kept
 * experts, sliced router rows) or a linear combination of equally long element ranges (merged experts,
 * mapped router rows), computed in fp32 and rounded back to the tensor's dtype.
 */

import { bytesPerElement, elementCount, isComputeDType, type StoredDType } from '../checkpoint/dtype';
import type { ModelSpec, WeightSource } from '../checkpoint/modelSpec';
import { SCALE_SUFFIX } from '../checkpoint/fp8Weights';
import { fusedExpertTensors, type FusedRole } from './fusedExpertTensors';
import { ExportError } from './exportErrors';
import { oneHotIndex, type ResolvedExportPlan, type ResolvedMoeLayer } from './exportPlan';
import { mergeTermOrder } from '../runtime/neuronOrder';

export interface SourceTensor {
  name: string;
  dtype: StoredDType;
  shape: number[];
  byteLength: number;
  /** The file the loader found it in. */
  file: string;
}

/** What export needs of a loaded checkpoint (`CheckpointLoad` satisfies it). */
export interface ExportSource {
  folder: string;
  config: Record<string, unknown>;
  spec: ModelSpec;
  weights: WeightSource;
  /** Tensors the runtime cannot compute with; they are still copied bit for bit. */
  uncomputableTensors?: { name: string; dtype: StoredDType; shape: number[]; file: string }[];
}

export type Segment =
  | { kind: 'raw'; source: string; byteOffset: number; byteLength: number }
  /**
   * Σ c·(element range of a source); a term with `neuronOrder` is an expert's gate or up [I, H] with its rows
   * renumbered, or its down [H, I] with its columns renumbered (runtime/neuronOrder.ts), before it is added.
   */
  | { kind: 'combine'; elements: number; terms: { source: string; elementOffset: number; coefficient: number; neuronOrder?: TermNeuronOrder }[] }
  /**
   * One expert of an MXFP4 weight (`weight`_blocks / _scales, [E, rows, groups, 16] / [E, rows, groups]) as Σ c·W over
   * source experts, decoded, summed in fp32 and re-encoded (checkpoint/mxfp4.ts); `part` says which bytes this is.
   */
  | { kind: 'mxfp4'; part: 'blocks' | 'scales'; weight: string; rows: number; groups: number; terms: { expert: number; coefficient: number }[] };

export interface TermNeuronOrder {
  axis: 'rows' | 'columns';
  order: number[];
}

export type TensorAction = 'kept' | 'renamed' | 'merged' | 'sliced' | 'mapped';

export interface OutputTensor {
  name: string;
  dtype: StoredDType;
  shape: number[];
  byteLength: number;
  action: TensorAction;
  /** Source tensors it is made from. */
  sources: string[];
  segments: Segment[];
}

export interface ExportLayout {
  tensors: OutputTensor[];
  /** Source tensors no output uses. */
  removed: SourceTensor[];
  sourceTensors: SourceTensor[];
}

/** Every stored tensor, in the loader's order (file by file, as each header lists them). */
export function listSourceTensors(source: ExportSource): SourceTensor[] {
  const computable = source.weights.names().map((name) => {
    const info = source.weights.info(name);
    return { name, dtype: info.dtype as StoredDType, shape: info.shape, byteLength: info.byteLength, file: info.file };
  });
  const uncomputable = (source.uncomputableTensors ?? []).map((tensor) => ({
    ...tensor,
    byteLength: elementCount(tensor.shape) * bytesPerElement(tensor.dtype),
  }));
  return [...computable, ...uncomputable];
}

const ROLES = ['gate', 'up', 'down'] as const;
type Role = (typeof ROLES)[number];

export function buildExportLayout(source: ExportSource, resolved: ResolvedExportPlan): ExportLayout {
  const { spec } = source;
  const sourceTensors = listSourceTensors(source);
  const byName = new Map(sourceTensors.map((tensor) => [tensor.name, tensor]));
  const planned = new Map(resolved.layers.filter((layer) => layer.planned).map((layer) => [layer.index, layer]));
  const expertTensor = new Map<string, ResolvedMoeLayer>();
  const routerTensor = new Map<string, ResolvedMoeLayer>();
  const fusedTensor = new Map<string, { layer: ResolvedMoeLayer; role: FusedRole }>();
  for (const layer of planned.values()) {
    const names = spec.tensors.layer(layer.index);
    routerTensor.set(names.router!, layer);
    // Router biases [E] (GPT-OSS's logit bias, DeepSeek V3's e_score_correction_bias) follow the router's rows.
    if (names.routerBias) routerTensor.set(names.routerBias, layer);
    if (names.correctionBias) routerTensor.set(names.correctionBias, layer);
    if (names.fusedExperts) for (const { name, role } of fusedExpertTensors(names.fusedExperts)) fusedTensor.set(name, { layer, role });
    for (let j = 0; j < layer.moe.numExperts && names.expert; j++) {
      for (const role of ROLES) {
        expertTensor.set(names.expert(j)[role], layer);
        // An FP8 expert's block scales travel with it (fp8Weights.ts); they are not outputs of their own.
        if (byName.has(names.expert(j)[role] + SCALE_SUFFIX)) expertTensor.set(names.expert(j)[role] + SCALE_SUFFIX, layer);
      }
    }
  }
  const require = (name: string): SourceTensor => {
    const found = byName.get(name);
    if (!found) throw new ExportError('invalidSource', `The source checkpoint has no tensor ${name}.`);
    return found;
  };

  const tensors: OutputTensor[] = [];
  const used = new Set<string>();
  const emitted = new Set<number>();
  for (const tensor of sourceTensors) {
    const expertLayer = expertTensor.get(tensor.name);
    const routerLayer = routerTensor.get(tensor.name);
    if (expertLayer) {
      if (emitted.has(expertLayer.index)) continue;
      emitted.add(expertLayer.index);
      tensors.push(...expertOutputs(spec, expertLayer, require));
    } else if (fusedTensor.has(tensor.name)) {
      const { layer, role } = fusedTensor.get(tensor.name)!;
      tensors.push(fusedExpertOutput(layer, tensor, role));
    } else if (routerLayer) {
      tensors.push(routerOutput(routerLayer, tensor, require));
    } else {
      tensors.push({
        name: tensor.name,
        dtype: tensor.dtype,
        shape: tensor.shape,
        byteLength: tensor.byteLength,
        action: 'kept',
        sources: [tensor.name],
        segments: [{ kind: 'raw', source: tensor.name, byteOffset: 0, byteLength: tensor.byteLength }],
      });
    }
  }
  for (const output of tensors) for (const name of output.sources) used.add(name);
  return { tensors, removed: sourceTensors.filter((tensor) => !used.has(tensor.name)), sourceTensors };
}

function expertOutputs(spec: ModelSpec, layer: ResolvedMoeLayer, require: (name: string) => SourceTensor): OutputTensor[] {
  const names = spec.tensors.layer(layer.index);
  const outputs: OutputTensor[] = [];
  layer.expertRows.forEach((mergeRow, i) => {
    for (const role of ROLES) {
      const name = names.expert!(i)[role];
      // Output compensation scales the down projection only: a scaled copy is a one-term combination.
      const scale = role === 'down' ? (layer.outputScale?.[i] ?? 1) : 1;
      const row = scale === 1 ? mergeRow : mergeRow.map((coefficient) => coefficient * scale);
      const copyOf = oneHotIndex(row);
      if (copyOf !== undefined) {
        const from = require(names.expert!(copyOf)[role]);
        // An FP8 weight and its weight_scale_inv are copied byte for byte together (a one-hot row of 1 only).
        const copies = from.dtype === 'F8_E4M3' ? [[name, from] as const, [name + SCALE_SUFFIX, require(from.name + SCALE_SUFFIX)] as const] : [[name, from] as const];
        for (const [outputName, source] of copies) {
          outputs.push({
            name: outputName,
            dtype: source.dtype,
            shape: source.shape,
            byteLength: source.byteLength,
            action: source.name === outputName ? 'kept' : 'renamed',
            sources: [source.name],
            segments: [{ kind: 'raw', source: source.name, byteOffset: 0, byteLength: source.byteLength }],
          });
        }
        continue;
      }
      if (require(names.expert!(0)[role]).dtype === 'F8_E4M3') throw new ExportError('invalidSource', fp8MergeRefusal(layer.index, name));
      const orderOf = (j: number): TermNeuronOrder | undefined => {
        const order = mergeTermOrder(mergeRow, j, layer.neuronOrder);
        return order && { axis: role === 'down' ? 'columns' : 'rows', order };
      };
      outputs.push(mergedExpert(name, role, row, (j) => require(names.expert!(j)[role]), orderOf));
    }
  });
  return outputs;
}

/**
 * A fused expert tensor [E, ...] (Granite MoE, GPT-OSS, its MXFP4 blocks and scales, its expert biases) keeps its
 * name and loses experts along its first axis: each new expert's slab is a byte range of its source expert's slab
 * (MXFP4 bytes copied exactly), or Σ M·W over source slabs when merged. The down side's slabs (and GPT-OSS's down
 * bias) carry output compensation's scale. A combined MXFP4 slab is decoded, summed and re-encoded (an 'mxfp4'
 * segment), which the runtime's evaluation of the plan reproduces.
 */
function fusedExpertOutput(layer: ResolvedMoeLayer, tensor: SourceTensor, role: FusedRole): OutputTensor {
  if (tensor.shape[0] !== layer.moe.numExperts) {
    throw new ExportError('invalidSource', `Fused experts ${tensor.name} have shape [${tensor.shape}], expected [${layer.moe.numExperts}, …].`);
  }
  const slabElements = elementCount(tensor.shape.slice(1));
  const slabBytes = slabElements * bytesPerElement(tensor.dtype);
  const rows = role === 'down' && layer.outputScale ? layer.expertRows.map((row, i) => row.map((c) => c * (layer.outputScale![i] ?? 1))) : layer.expertRows;
  const merged = rows.some((row) => oneHotIndex(row) === undefined);
  const mxfp4 = /_(blocks|scales)$/.exec(tensor.name);
  if (merged && !isComputeDType(tensor.dtype) && !(mxfp4 && tensor.dtype === 'U8')) throw new ExportError('invalidSource', `${tensor.name} is ${tensor.dtype}; only F32, F16 and BF16 experts can be merged.`);
  const segments: Segment[] = rows.map((row) => {
    const copyOf = oneHotIndex(row);
    if (copyOf !== undefined) return { kind: 'raw', source: tensor.name, byteOffset: copyOf * slabBytes, byteLength: slabBytes };
    if (mxfp4) {
      const terms = row.flatMap((coefficient, expert) => (coefficient === 0 ? [] : [{ expert, coefficient }]));
      return { kind: 'mxfp4', part: mxfp4[1] as 'blocks' | 'scales', weight: tensor.name.slice(0, mxfp4.index), rows: tensor.shape[1], groups: tensor.shape[2], terms };
    }
    return {
      kind: 'combine',
      elements: slabElements,
      terms: row.flatMap((coefficient, j) => (coefficient === 0 ? [] : [{ source: tensor.name, elementOffset: j * slabElements, coefficient }])),
    };
  });
  const identity = rows.length === layer.moe.numExperts && rows.every((row, i) => oneHotIndex(row) === i);
  return {
    name: tensor.name,
    dtype: tensor.dtype,
    shape: [rows.length, ...tensor.shape.slice(1)],
    byteLength: layer.expertRows.length * slabBytes,
    action: identity ? 'kept' : merged ? 'merged' : 'sliced',
    sources: [tensor.name],
    segments,
  };
}

/**
 * A merged (or output-scaled) expert of an FP8 checkpoint would be new weights, which would need re-encoding
 * in FP8 with new block scales; MoE Studio evaluates plans in fp32 on the dequantised weights and does not
 * re-encode, so such an export is refused rather than written in another encoding than the source's.
 */
function fp8MergeRefusal(layer: number, name: string): string {
  return `Layer ${layer}: ${name} would be a merged or scaled expert, but the checkpoint stores its experts in FP8 (F8_E4M3 with weight_scale_inv block scales). MoE Studio does not re-encode new weights in FP8, so it exports only plans that keep experts whole (pruning, top-k); merge or compensate on a BF16 copy of the model instead.`;
}

function mergedExpert(name: string, role: Role, row: number[], sourceOf: (j: number) => SourceTensor, orderOf: (j: number) => TermNeuronOrder | undefined): OutputTensor {
  const terms = row.flatMap((coefficient, j) => (coefficient === 0 ? [] : [{ tensor: sourceOf(j), coefficient, neuronOrder: orderOf(j) }]));
  // An all-zero row is a legal (if odd) plan: a zero expert, shaped like expert 0.
  const shapeOf = terms[0]?.tensor ?? sourceOf(0);
  for (const { tensor } of terms) {
    if (!isComputeDType(tensor.dtype)) throw new ExportError('invalidSource', `${tensor.name} is ${tensor.dtype}; only F32, F16 and BF16 experts can be merged.`);
    if (tensor.dtype !== shapeOf.dtype || tensor.shape.join() !== shapeOf.shape.join()) {
      throw new ExportError('invalidSource', `Cannot merge ${tensor.name} (${tensor.dtype} [${tensor.shape}]) with ${shapeOf.name} (${shapeOf.dtype} [${shapeOf.shape}]) into the ${role} of ${name}.`);
    }
  }
  return {
    name,
    dtype: shapeOf.dtype,
    shape: shapeOf.shape,
    byteLength: shapeOf.byteLength,
    action: 'merged',
    sources: terms.map(({ tensor }) => tensor.name),
    segments: [
      {
        kind: 'combine',
        elements: elementCount(shapeOf.shape),
        terms: terms.map(({ tensor, coefficient, neuronOrder }) => ({ source: tensor.name, elementOffset: 0, coefficient, ...(neuronOrder && { neuronOrder }) })),
      },
    ],
  };
}

/**
 * The router's rows follow the kept experts, mapped or sliced. DeepSeek V3's e_score_correction_bias [E] is
 * one value per router row and follows it the same way (a 1-wide row), as the runtime maps it (deepseekRouting.ts).
 */
function routerOutput(layer: ResolvedMoeLayer, router: SourceTensor, require: (name: string) => SourceTensor): OutputTensor {
  require(router.name);
  // A router bias [E] (GPT-OSS) follows its rows like a weight of width 1: b' = W_RM b.
  const [rows, hidden = 1] = router.shape;
  if (router.shape.length > 2 || rows !== layer.moe.numExperts) {
    throw new ExportError('invalidSource', `Router ${router.name} has shape [${router.shape}], expected [${layer.moe.numExperts}, hidden] or [${layer.moe.numExperts}].`);
  }
  const rowBytes = hidden * bytesPerElement(router.dtype);
  const identity = layer.routerRows.length === rows && layer.routerRows.every((row, i) => oneHotIndex(row) === i);
  const sliced = layer.routerRows.every((row) => oneHotIndex(row) !== undefined);
  if (!sliced && !isComputeDType(router.dtype)) {
    throw new ExportError('invalidSource', `Router ${router.name} is ${router.dtype}; only F32, F16 and BF16 routers can be mapped.`);
  }
  const segments: Segment[] = layer.routerRows.map((row) => {
    const copyOf = oneHotIndex(row);
    if (copyOf !== undefined) return { kind: 'raw', source: router.name, byteOffset: copyOf * rowBytes, byteLength: rowBytes };
    return {
      kind: 'combine',
      elements: hidden,
      terms: row.flatMap((coefficient, j) => (coefficient === 0 ? [] : [{ source: router.name, elementOffset: j * hidden, coefficient }])),
    };
  });
  return {
    name: router.name,
    dtype: router.dtype,
    shape: router.shape.length === 1 ? [layer.numExperts] : [layer.numExperts, hidden],
    byteLength: layer.numExperts * rowBytes,
    action: identity ? 'kept' : sliced ? 'sliced' : 'mapped',
    sources: [router.name],
    segments,
  };
}
