/**
 * Neuron orders: a SwiGLU expert y = W_down (silu(W_gate x) ⊙ W_up x) computes the same function when
 * its intermediate neurons are renumbered consistently (rows of gate and up, the matching columns of
 * down), since the sum over neurons in the down projection does not depend on their order. UNCURL's
 * alignment (plan/methods/neuronAlignment.ts) renumbers each expert it merges so that its neuron k
 * matches the surviving expert's neuron k; the merge then averages matched neurons.
 *
 * `neuronOrder[j][k]` is the original neuron of expert j placed at position k. It applies where expert
 * j is combined with other experts (a merge row with two or more non-zero coefficients); a row that
 * copies or scales one expert uses it as stored, because renumbering one expert alone changes nothing it
 * computes (and a kept expert stays a byte-exact copy in an export). The runtime (layerWeights.ts), the
 * Hugging Face export (exportLayout.ts, hfExport.ts) and the ONNX export all read it through
 * `mergeTermOrder`, so they compute the same merged weights in the same order.
 */
import type { ModelSpec } from '../checkpoint/modelSpec';

/** Per original expert id (a JSON object key), its neurons' new order; experts without one keep theirs. */
export type NeuronOrder = Record<number, number[]>;

/** The order expert `j` is read in as a term of `row`, or undefined when it is read as stored. */
export function mergeTermOrder(row: readonly number[], j: number, neuronOrder: NeuronOrder | undefined): number[] | undefined {
  if (!neuronOrder || row[j] === 0) return undefined;
  const order = neuronOrder[j];
  if (!order) return undefined;
  let terms = 0;
  for (const c of row) if (c !== 0) terms++;
  return terms > 1 ? order : undefined;
}

/** Rows of a row-major [order.length, width] matrix renumbered: output row k is input row order[k]. */
export function permuteRows(values: Float32Array, order: readonly number[], width: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let k = 0; k < order.length; k++) out.set(values.subarray(order[k] * width, (order[k] + 1) * width), k * width);
  return out;
}

/** Columns of a row-major [rows, order.length] matrix renumbered: output column k is input column order[k]. */
export function permuteColumns(values: Float32Array, order: readonly number[]): Float32Array {
  const width = order.length;
  const out = new Float32Array(values.length);
  for (let r = 0; r < values.length; r += width) {
    for (let k = 0; k < width; k++) out[r + k] = values[r + order[k]];
  }
  return out;
}

/** Why `neuronOrder` is malformed for a layer of `numExperts` experts with `intermediate` neurons each (undefined: fine). */
export function neuronOrderProblem(neuronOrder: unknown, numExperts: number, intermediate: number): string | undefined {
  if (!neuronOrder || typeof neuronOrder !== 'object' || Array.isArray(neuronOrder)) return 'neuronOrder must be an object from expert ids to neuron orders';
  for (const [key, order] of Object.entries(neuronOrder)) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || id >= numExperts) return `neuronOrder names expert "${key}", which is not in 0..${numExperts - 1}`;
    const problem = permutationProblem(order, intermediate);
    if (problem) return `neuronOrder of expert ${id} ${problem}`;
  }
  return undefined;
}

/** Why `order` is not a permutation of 0..n-1 (undefined: it is). */
export function permutationProblem(order: unknown, n: number): string | undefined {
  if (!Array.isArray(order)) return 'is not an array';
  if (order.length !== n) return `has ${order.length} entries; an expert has ${n} intermediate neurons`;
  const seen = new Uint8Array(n);
  for (const value of order) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= n) return `has ${JSON.stringify(value)}, not a neuron in 0..${n - 1}`;
    if (seen[value]) return `lists neuron ${value} twice`;
    seen[value] = 1;
  }
  return undefined;
}

/**
 * Why neuron orders cannot be applied to `layer` of this model (undefined: they can). Fused expert
 * tensors (Granite MoE's [E, 2I, H] input_linear, GPT-OSS's interleaved gate_up_proj) would need their
 * own renumbering in the export, and GPT-OSS's MXFP4 experts are re-encoded when merged; neither is
 * written, so plans for them merge without alignment.
 */
export function neuronOrderRefusal(spec: ModelSpec, layer: number): string | undefined {
  const names = spec.tensors.layer(layer);
  if (spec.expertEncoding === 'mxfp4') return 'the experts are stored in MXFP4; neuron orders apply only to F32, F16 and BF16 experts';
  if (names.fusedExperts) return `${spec.architecture} stores its experts fused in one tensor per projection; neuron orders apply only to experts stored one tensor each`;
  return undefined;
}
