/**
 * A slow, obvious forward pass of the supported architectures, written straight from the HF
 * modeling files in float64, one sequence at a time (so no padding). Tests compare the ONNX runtime
 * against it; it applies runtime plans the direct way (mapped router rows, merged expert weights).
 */

import type { LayerSpec, MlpTensorNames, ModelSpec } from '../../server/src/checkpoint/modelSpec';
import type { LayerPlan, RuntimePlan } from '../../server/src/runtime/runtimePlan';
import { deepseekChoose, mlaAttention } from './referenceDeepseek';

/** Anything that hands out fp32 tensors by name: a WeightSource, or a test's in-memory map. */
export interface ReferenceWeights {
  readFloat32(name: string): Promise<Float32Array>;
}

export interface ReferenceMoeLayer {
  layer: number;
  routerLogits: Float64Array; // [T, E']
  selectedExperts: Int32Array; // [T, k], -1 for dropped slots
  gateWeights: Float64Array; // [T, k]
  expertOutputNorms: Float64Array; // [T, k]
  inputs: Float64Array; // [T, H]
}

export interface ReferenceOutput {
  logits: Float64Array; // [T, V]
  moe: ReferenceMoeLayer[];
}

type Matrix = { data: Float64Array; rows: number; cols: number };

export async function referenceForward(spec: ModelSpec, weights: ReferenceWeights, tokens: ArrayLike<number>, plan?: RuntimePlan): Promise<ReferenceOutput> {
  const read = async (name: string) => Float64Array.from(await weights.readFloat32(name));
  const H = spec.hiddenSize;
  const T = tokens.length;
  const embed = await read(spec.tensors.embedTokens);
  let x: Matrix = { data: new Float64Array(T * H), rows: T, cols: H };
  for (let t = 0; t < T; t++) x.data.set(embed.subarray(tokens[t] * H, (tokens[t] + 1) * H), t * H);
  // GraniteMoeModel: inputs_embeds * embedding_multiplier; each decoder layer: residual + sublayer(x) * residual_multiplier.
  const scaling = spec.scaling ?? { embedding: 1, residual: 1, logitsScaling: 1 };
  x = scale(x, scaling.embedding);
  const moe: ReferenceMoeLayer[] = [];
  for (const layer of spec.layers) {
    const names = spec.tensors.layer(layer.index);
    const attend = spec.attention.mla ? mlaAttention : attention;
    const attended = add(x, scale(await attend(spec, layer.index, rmsNorm(x, await read(names.inputNorm), spec.rmsNormEps), read), scaling.residual));
    const normed = rmsNorm(attended, await read(names.postAttentionNorm), spec.rmsNormEps);
    const feedForward = layer.kind === 'dense' ? await mlp(normed, names.mlp!, read) : await sparseMoe(spec, layer, normed, read, plan?.layers[layer.index] ?? {}, moe);
    x = add(attended, scale(feedForward, scaling.residual));
  }
  const final = rmsNorm(x, await read(spec.tensors.finalNorm), spec.rmsNormEps);
  const lmHead = await read(spec.tensors.lmHead ?? spec.tensors.embedTokens);
  return { logits: scale(linear(final, lmHead, spec.vocabSize), 1 / scaling.logitsScaling).data, moe };
}

/** Next-token cross-entropy from reference logits: loss[t] = -log softmax(logits[t])[tokens[t + 1]]. */
export function referenceLoss(logits: Float64Array, vocab: number, tokens: ArrayLike<number>): Float64Array {
  const loss = new Float64Array(tokens.length - 1);
  for (let t = 0; t + 1 < tokens.length; t++) {
    const row = logits.subarray(t * vocab, (t + 1) * vocab);
    const max = Math.max(...row);
    const logSum = Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) + max;
    loss[t] = logSum - row[tokens[t + 1]];
  }
  return loss;
}

async function attention(spec: ModelSpec, layerIndex: number, x: Matrix, read: (n: string) => Promise<Float64Array>): Promise<Matrix> {
  const { numHeads, numKvHeads, headDim, qkNorm, ropeTheta } = spec.attention;
  const names = spec.tensors.layer(layerIndex);
  const T = x.rows;
  const project = async (weight: string, bias: string | undefined, heads: number) => {
    const y = linear(x, await read(weight), heads * headDim);
    if (bias) {
      const b = await read(bias);
      for (let i = 0; i < y.data.length; i++) y.data[i] += b[i % b.length];
    }
    return y;
  };
  let q = await project(names.q, names.qBias, numHeads);
  let k = await project(names.k, names.kBias, numKvHeads);
  const v = await project(names.v, names.vBias, numKvHeads);
  if (qkNorm === 'full') {
    q = rmsNorm(q, await read(names.qNorm!), spec.rmsNormEps);
    k = rmsNorm(k, await read(names.kNorm!), spec.rmsNormEps);
  }
  if (qkNorm === 'perHead') {
    const perHead = async (m: Matrix, heads: number, name: string) => rmsNorm({ data: m.data, rows: T * heads, cols: headDim }, await read(name), spec.rmsNormEps).data;
    q = { ...q, data: await perHead(q, numHeads, names.qNorm!) };
    k = { ...k, data: await perHead(k, numKvHeads, names.kNorm!) };
  }
  const rotaryDim = spec.attention.rotaryDim ?? headDim;
  rope(q, numHeads, headDim, ropeTheta, rotaryDim);
  rope(k, numKvHeads, headDim, ropeTheta, rotaryDim);
  const context: Matrix = { data: new Float64Array(T * numHeads * headDim), rows: T, cols: numHeads * headDim };
  const group = numHeads / numKvHeads;
  for (let h = 0; h < numHeads; h++) {
    const kvHead = Math.floor(h / group);
    for (let i = 0; i < T; i++) {
      const scores: number[] = [];
      for (let j = 0; j <= i; j++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q.data[i * q.cols + h * headDim + d] * k.data[j * k.cols + kvHead * headDim + d];
        scores.push(dot * (spec.attention.scale ?? 1 / Math.sqrt(headDim)));
      }
      const probs = softmax(scores);
      for (let j = 0; j <= i; j++) {
        for (let d = 0; d < headDim; d++) context.data[i * context.cols + h * headDim + d] += probs[j] * v.data[j * v.cols + kvHead * headDim + d];
      }
    }
  }
  return linear(context, await read(names.o), spec.hiddenSize);
}

/** rotate_half RoPE at positions 0..T-1, in place, on the first `rotaryDim` of each head (GLM-4.5: half of it). */
function rope(m: Matrix, heads: number, headDim: number, theta: number, rotaryDim = headDim): void {
  const half = rotaryDim / 2;
  for (let t = 0; t < m.rows; t++) {
    for (let h = 0; h < heads; h++) {
      const base = t * m.cols + h * headDim;
      for (let i = 0; i < half; i++) {
        const angle = t / Math.pow(theta, (2 * i) / rotaryDim);
        const [x1, x2] = [m.data[base + i], m.data[base + half + i]];
        m.data[base + i] = x1 * Math.cos(angle) - x2 * Math.sin(angle);
        m.data[base + half + i] = x2 * Math.cos(angle) + x1 * Math.sin(angle);
      }
    }
  }
}

async function sparseMoe(spec: ModelSpec, layer: Extract<LayerSpec, { kind: 'moe' }>, x: Matrix, read: (n: string) => Promise<Float64Array>, plan: LayerPlan, captures: ReferenceMoeLayer[]): Promise<Matrix> {
  const names = spec.tensors.layer(layer.index);
  const E = layer.moe.numExperts;
  const H = spec.hiddenSize;
  const T = x.rows;
  const originalRouter = await read(names.router!);
  const experts: MlpWeights[] = [];
  if (names.fusedExperts) {
    // GraniteMoeParallelExperts: weight [E, out, in]; input_linear's output is chunked into (gate, up).
    const I = layer.moe.expert.intermediateSize;
    const [gateUp, down] = [await read(names.fusedExperts.gateUp), await read(names.fusedExperts.down)];
    for (let j = 0; j < E; j++) {
      const gateAndUp = gateUp.subarray(j * 2 * I * H, (j + 1) * 2 * I * H);
      experts.push({ gate: gateAndUp.subarray(0, I * H), up: gateAndUp.subarray(I * H), down: down.subarray(j * H * I, (j + 1) * H * I) });
    }
  }
  for (let j = 0; j < E && names.expert; j++) experts.push(await readMlp(names.expert(j), read));
  // The plan, applied to the weights directly: W_r' = W_RM W_r, expert_i' = Σ_j W_EM[i][j] expert_j.
  const router = plan.routerMap ? combineRows(plan.routerMap, (j) => originalRouter.subarray(j * H, (j + 1) * H)) : originalRouter;
  const routed = plan.mergeMatrix
    ? plan.mergeMatrix.map((row, i) => ({ gate: combineRows([row], (j) => experts[j].gate), up: combineRows([row], (j) => experts[j].up), down: combineRows([row.map((c) => c * (plan.outputScale?.[i] ?? 1))], (j) => experts[j].down) }))
    : experts;
  const routedCount = routed.length;
  const k = plan.topK ?? layer.moe.topK;
  const routing = layer.moe.routing;
  // The correction bias follows the router rows: mapped expert i's bias is Σ_j routerMap[i][j] · bias_j.
  const originalBias = names.routerBias ? await read(names.routerBias) : undefined;
  const routerBias = originalBias && plan.routerMap ? combineRows(plan.routerMap, (j) => [originalBias[j]]) : originalBias;
  const logits = linear(x, router, routedCount);
  const capture: ReferenceMoeLayer = {
    layer: layer.index,
    routerLogits: logits.data,
    selectedExperts: new Int32Array(T * k),
    gateWeights: new Float64Array(T * k),
    expertOutputNorms: new Float64Array(T * k),
    inputs: x.data,
  };
  const out: Matrix = { data: new Float64Array(T * H), rows: T, cols: H };
  for (let t = 0; t < T; t++) {
    let chosen: { e: number; p: number; kept: boolean }[];
    if (routing) {
      // DeepSeek: the router's own choice (referenceDeepseek.ts); adaptive gating reads the gap of the first two weights.
      const picks = deepseekChoose(routing, Array.from(logits.data.subarray(t * routedCount, (t + 1) * routedCount)), routerBias, plan.keptExperts, k);
      const dropAfterFirst = picks.length > 1 && picks[0].p - picks[1].p > (plan.adaptiveThreshold ?? Infinity);
      chosen = picks.map((c, slot) => ({ e: c.e, p: c.p, kept: (slot === 0 || !dropAfterFirst) && c.valid }));
    } else {
      const row = Array.from(logits.data.subarray(t * routedCount, (t + 1) * routedCount), (v, e) => (plan.keptExperts && !plan.keptExperts[e] ? -Infinity : v));
      const probs = softmax(row);
      const order = probs.map((p, e) => ({ p, e })).sort((a, b) => b.p - a.p || a.e - b.e);
      const dropAfterFirst = order[0].p - order[1].p > (plan.adaptiveThreshold ?? Infinity);
      chosen = order.slice(0, k).map((c, slot) => ({ ...c, kept: (slot === 0 || !dropAfterFirst) && c.p > 0 }));
    }
    const total = chosen.reduce((s, c) => s + (c.kept ? c.p : 0), 0);
    const token: Matrix = { data: x.data.slice(t * H, (t + 1) * H), rows: 1, cols: H };
    chosen.forEach((c, slot) => {
      capture.selectedExperts[t * k + slot] = c.kept ? c.e : -1;
      if (!c.kept) return;
      const weight = (layer.moe.normTopKProb ? c.p / total : c.p) * (routing?.scalingFactor ?? 1);
      const y = swiglu(token, routed[c.e], layer.moe.expert.intermediateSize, H);
      capture.gateWeights[t * k + slot] = weight;
      capture.expertOutputNorms[t * k + slot] = Math.hypot(...y.data);
      for (let d = 0; d < H; d++) out.data[t * H + d] += weight * y.data[d];
    });
  }
  const shared = layer.moe.sharedExpert;
  if (shared) {
    const sharedOut = await mlp(x, names.sharedExpert!, read);
    const gate = shared.gated ? linear(x, await read(names.sharedExpertGate!), 1).data : undefined;
    for (let i = 0; i < out.data.length; i++) out.data[i] += (gate ? sigmoid(gate[Math.floor(i / H)]) : 1) * sharedOut.data[i];
  }
  captures.push(capture);
  return out;
}

type MlpWeights = { gate: Float64Array; up: Float64Array; down: Float64Array };

async function readMlp(names: MlpTensorNames, read: (n: string) => Promise<Float64Array>): Promise<MlpWeights> {
  return { gate: await read(names.gate), up: await read(names.up), down: await read(names.down) };
}

async function mlp(x: Matrix, names: MlpTensorNames, read: (n: string) => Promise<Float64Array>): Promise<Matrix> {
  const weights = await readMlp(names, read);
  return swiglu(x, weights, weights.gate.length / x.cols, x.cols);
}

function swiglu(x: Matrix, w: MlpWeights, intermediate: number, hidden: number): Matrix {
  const gate = linear(x, w.gate, intermediate);
  const up = linear(x, w.up, intermediate);
  for (let i = 0; i < gate.data.length; i++) gate.data[i] = gate.data[i] * sigmoid(gate.data[i]) * up.data[i];
  return linear(gate, w.down, hidden);
}

/** y = x W^T with W in HF layout [out, in]. */
function linear(x: Matrix, weight: ArrayLike<number>, out: number): Matrix {
  const y = new Float64Array(x.rows * out);
  for (let r = 0; r < x.rows; r++) {
    for (let o = 0; o < out; o++) {
      let sum = 0;
      for (let i = 0; i < x.cols; i++) sum += x.data[r * x.cols + i] * weight[o * x.cols + i];
      y[r * out + o] = sum;
    }
  }
  return { data: y, rows: x.rows, cols: out };
}

function rmsNorm(x: Matrix, weight: ArrayLike<number>, eps: number): Matrix {
  const y = new Float64Array(x.data.length);
  for (let r = 0; r < x.rows; r++) {
    let sumSquares = 0;
    for (let c = 0; c < x.cols; c++) sumSquares += x.data[r * x.cols + c] ** 2;
    const scale = 1 / Math.sqrt(sumSquares / x.cols + eps);
    for (let c = 0; c < x.cols; c++) y[r * x.cols + c] = x.data[r * x.cols + c] * scale * weight[c];
  }
  return { data: y, rows: x.rows, cols: x.cols };
}

/** Σ_j coefficients[i][j] · row(j), stacked for every i. */
function combineRows(coefficients: number[][], row: (j: number) => ArrayLike<number>): Float64Array {
  const width = row(0).length;
  const out = new Float64Array(coefficients.length * width);
  coefficients.forEach((c, i) => c.forEach((coefficient, j) => {
    const source = row(j);
    for (let d = 0; d < width; d++) out[i * width + d] += coefficient * source[d];
  }));
  return out;
}

function scale(m: Matrix, factor: number): Matrix {
  return factor === 1 ? m : { ...m, data: m.data.map((v) => v * factor) };
}

function add(a: Matrix, b: Matrix): Matrix {
  return { ...a, data: a.data.map((v, i) => v + b.data[i]) };
}

function softmax(values: number[]): number[] {
  const max = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

function sigmoid(v: number): number {
  return 1 / (1 + Math.exp(-v));
}
