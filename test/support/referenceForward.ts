/**
 * A slow, obvious forward pass of the supported architectures, written straight from the HF
 * modeling files in float64, one sequence at a time (so no padding). Tests compare the ONNX runtime
 * against it; it applies runtime plans the direct way (mapped router rows, merged expert weights).
 */

import type { LayerSpec, MlpTensorNames, ModelSpec } from '../../server/src/checkpoint/modelSpec';
import type { LayerPlan, RuntimePlan } from '../../server/src/runtime/runtimePlan';
import { deepseekChoose, mlaAttention } from './referenceDeepseek';
import { linear, rmsNorm, type Matrix } from './referenceMath';
import { clampedSwigluExpert, layerNormRows, readGptOssExperts, referenceRope, sparsemixer } from './referenceFamilies';

/** Anything that hands out fp32 tensors by name: a WeightSource, or a test's in-memory map; `readRaw` for MXFP4 bytes. */
export interface ReferenceWeights {
  readFloat32(name: string): Promise<Float32Array>;
  readRaw?(name: string): Promise<Uint8Array>;
}

export interface ReferenceMoeLayer {
  layer: number;
  routerLogits: Float64Array; // [T, E']
  selectedExperts: Int32Array; // [T, k], -1 for dropped slots
  gateWeights: Float64Array; // [T, k]
  expertOutputNorms: Float64Array; // [T, k]
  inputs: Float64Array; // [T, H]
  /** The routed experts' mix [T, H] (shared expert excluded), what plan methods reconstruct. */
  routedOutput: Float64Array;
}

export interface ReferenceOutput {
  logits: Float64Array; // [T, V]
  moe: ReferenceMoeLayer[];
}


export async function referenceForward(spec: ModelSpec, weights: ReferenceWeights, tokens: ArrayLike<number>, plan?: RuntimePlan): Promise<ReferenceOutput> {
  const read = async (name: string) => Float64Array.from(await weights.readFloat32(name));
  const readRaw = (name: string) => (weights.readRaw ? weights.readRaw(name) : Promise.reject(new Error(`${name}: these weights have no raw reader for MXFP4 bytes`)));
  const H = spec.hiddenSize;
  // Phi-MoE: nn.LayerNorm with bias where the others use RMSNorm.
  const norm = async (m: Matrix, weight: string, bias: string | undefined) =>
    spec.layerNorm ? { ...m, data: layerNormRows(m.data, m.cols, await read(weight), await read(bias!), spec.rmsNormEps) } : rmsNorm(m, await read(weight), spec.rmsNormEps);
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
    const attended = add(x, scale(await attend(spec, layer.index, await norm(x, names.inputNorm, names.inputNormBias), read), scaling.residual));
    const normed = await norm(attended, names.postAttentionNorm, names.postAttentionNormBias);
    const feedForward = layer.kind === 'dense' ? await mlp(normed, names.mlp!, read) : await sparseMoe(spec, layer, normed, read, readRaw, plan?.layers[layer.index] ?? {}, moe);
    x = add(attended, scale(feedForward, scaling.residual));
  }
  const final = await norm(x, spec.tensors.finalNorm, spec.tensors.finalNormBias);
  const lmHead = await read(spec.tensors.lmHead ?? spec.tensors.embedTokens);
  const logits = scale(linear(final, lmHead, spec.vocabSize), 1 / scaling.logitsScaling);
  if (spec.tensors.lmHeadBias) addBias(logits, await read(spec.tensors.lmHeadBias));
  return { logits: logits.data, moe };
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
  // GLM-4.5's partial rotary: only the first rotaryDim of each head rotate.
  const rotaryDim = spec.attention.rotaryDim ?? headDim;
  const { invFreq, factor } = referenceRope(rotaryDim, ropeTheta, T, spec.attention.ropeScaling);
  rope(q, numHeads, headDim, invFreq, factor, rotaryDim);
  rope(k, numKvHeads, headDim, invFreq, factor, rotaryDim);
  // GPT-OSS: a sliding layer's query sees the last `size` positions; a sink logit per head joins each softmax.
  const window = spec.attention.slidingWindow?.layers.includes(layerIndex) ? spec.attention.slidingWindow.size : Infinity;
  const sinks = names.sinks ? await read(names.sinks) : undefined;
  const context: Matrix = { data: new Float64Array(T * numHeads * headDim), rows: T, cols: numHeads * headDim };
  const group = numHeads / numKvHeads;
  for (let h = 0; h < numHeads; h++) {
    const kvHead = Math.floor(h / group);
    for (let i = 0; i < T; i++) {
      const scores: number[] = [];
      for (let j = 0; j <= i; j++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q.data[i * q.cols + h * headDim + d] * k.data[j * k.cols + kvHead * headDim + d];
        scores.push(i - j < window ? dot * (spec.attention.scale ?? 1 / Math.sqrt(headDim)) : -Infinity);
      }
      const probs = sinks ? softmax([...scores, sinks[h]]).slice(0, -1) : softmax(scores);
      for (let j = 0; j <= i; j++) {
        for (let d = 0; d < headDim; d++) context.data[i * context.cols + h * headDim + d] += probs[j] * v.data[j * v.cols + kvHead * headDim + d];
      }
    }
  }
  const out = linear(context, await read(names.o), spec.hiddenSize);
  if (names.oBias) addBias(out, await read(names.oBias));
  return out;
}

/**
 * rotate_half RoPE at positions 0..T-1, in place, on the first `rotaryDim` of each head (GLM-4.5: part of it);
 * cos and sin times `factor` (YaRN's attention factor, LongRoPE's mscale).
 */
function rope(m: Matrix, heads: number, headDim: number, invFreq: number[], factor: number, rotaryDim = headDim): void {
  const half = rotaryDim / 2;
  for (let t = 0; t < m.rows; t++) {
    for (let h = 0; h < heads; h++) {
      const base = t * m.cols + h * headDim;
      for (let i = 0; i < half; i++) {
        const angle = t * invFreq[i];
        const [cos, sin] = [Math.cos(angle) * factor, Math.sin(angle) * factor];
        const [x1, x2] = [m.data[base + i], m.data[base + half + i]];
        m.data[base + i] = x1 * cos - x2 * sin;
        m.data[base + half + i] = x2 * cos + x1 * sin;
      }
    }
  }
}

async function sparseMoe(
  spec: ModelSpec,
  layer: Extract<LayerSpec, { kind: 'moe' }>,
  x: Matrix,
  read: (n: string) => Promise<Float64Array>,
  readRaw: (n: string) => Promise<Uint8Array>,
  plan: LayerPlan,
  captures: ReferenceMoeLayer[],
): Promise<Matrix> {
  const names = spec.tensors.layer(layer.index);
  const E = layer.moe.numExperts;
  const H = spec.hiddenSize;
  const T = x.rows;
  const originalRouter = await read(names.router!);
  const experts: MlpWeights[] = [];
  if (names.fusedExperts?.layout === 'interleavedInOut') experts.push(...(await readGptOssExperts(spec, layer, read, readRaw)));
  else if (names.fusedExperts) {
    // GraniteMoeParallelExperts: weight [E, out, in]; input_linear's output is chunked into (gate, up).
    const I = layer.moe.expert.intermediateSize;
    const [gateUp, down] = [await read(names.fusedExperts.gateUp), await read(names.fusedExperts.down)];
    for (let j = 0; j < E; j++) {
      const gateAndUp = gateUp.subarray(j * 2 * I * H, (j + 1) * 2 * I * H);
      experts.push({ gate: gateAndUp.subarray(0, I * H), up: gateAndUp.subarray(I * H), down: down.subarray(j * H * I, (j + 1) * H * I) });
    }
  }
  for (let j = 0; j < E && names.expert; j++) experts.push(await readMlp(names.expert(j), read));
  // Neuron orders renumber an expert's intermediate neurons (gate and up rows, down columns). Applied here to
  // every expert that has one, copied ones too: renumbering one expert alone changes nothing it computes,
  // so only the pairing of neurons in a merge can differ.
  for (const [key, order] of Object.entries(plan.neuronOrder ?? {})) experts[Number(key)] = renumbered(experts[Number(key)], order, H);
  // The plan, applied to the weights directly: W_r' = W_RM W_r, expert_i' = Σ_j W_EM[i][j] expert_j.
  const router = plan.routerMap ? combineRows(plan.routerMap, (j) => originalRouter.subarray(j * H, (j + 1) * H)) : originalRouter;
  const routed = plan.mergeMatrix
    ? plan.mergeMatrix.map((row, i) => {
        const scaled = row.map((c) => c * (plan.outputScale?.[i] ?? 1));
        const merged: MlpWeights = { gate: combineRows([row], (j) => experts[j].gate), up: combineRows([row], (j) => experts[j].up), down: combineRows([scaled], (j) => experts[j].down) };
        // GPT-OSS: each bias merges with its weight; the down bias is scaled with the output.
        if (experts[0].gateBias) Object.assign(merged, { gateBias: combineRows([row], (j) => experts[j].gateBias!), upBias: combineRows([row], (j) => experts[j].upBias!), downBias: combineRows([scaled], (j) => experts[j].downBias!) });
        return merged;
      })
    : experts;
  const routedCount = routed.length;
  const k = plan.topK ?? layer.moe.topK;
  const routing = layer.moe.routing;
  const mixer = layer.moe.sparsemixer;
  // The correction bias follows the router rows: mapped expert i's bias is Σ_j routerMap[i][j] · bias_j.
  const originalBias = names.correctionBias ? await read(names.correctionBias) : undefined;
  const routerBias = originalBias && plan.routerMap ? combineRows(plan.routerMap, (j) => [originalBias[j]]) : originalBias;
  const logits = linear(x, router, routedCount);
  if (names.routerBias) {
    const bias = await read(names.routerBias);
    // GptOssTopKRouter: F.linear(x, W, b); a mapped router maps the biased logits (b' = W_RM b).
    addBias(logits, plan.routerMap ? combineRows(plan.routerMap, (j) => [bias[j]]) : bias);
  }
  const clamped = layer.moe.clampedSwiglu;
  const expertOutput = (token: Matrix, e: number) =>
    clamped ? { data: clampedSwigluExpert(token.data, routed[e], layer.moe.expert.intermediateSize, H, clamped.alpha, clamped.limit) } : swiglu(token, routed[e], layer.moe.expert.intermediateSize, H);
  const capture: ReferenceMoeLayer = {
    layer: layer.index,
    routerLogits: logits.data,
    selectedExperts: new Int32Array(T * k),
    gateWeights: new Float64Array(T * k),
    expertOutputNorms: new Float64Array(T * k),
    inputs: x.data,
    routedOutput: new Float64Array(0),
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
      // Phi-MoE: sparsemixer picks and weights the (at most two) experts; adaptive gating reads the same softmax gap.
      const picks = mixer ? sparsemixer(row, mixer.jitterEps).map(({ expert, weight }) => ({ e: expert, p: weight })) : order;
      chosen = picks.slice(0, k).map((c, slot) => ({ ...c, kept: (slot === 0 || !dropAfterFirst) && c.p > 0 }));
    }
    const total = chosen.reduce((s, c) => s + (c.kept ? c.p : 0), 0);
    const token: Matrix = { data: x.data.slice(t * H, (t + 1) * H), rows: 1, cols: H };
    chosen.forEach((c, slot) => {
      capture.selectedExperts[t * k + slot] = c.kept ? c.e : -1;
      if (!c.kept) return;
      const weight = (layer.moe.normTopKProb && !mixer ? c.p / total : c.p) * (routing?.scalingFactor ?? 1);
      const y = expertOutput(token, c.e);
      capture.gateWeights[t * k + slot] = weight;
      capture.expertOutputNorms[t * k + slot] = Math.hypot(...y.data);
      for (let d = 0; d < H; d++) out.data[t * H + d] += weight * y.data[d];
    });
  }
  capture.routedOutput = out.data.slice();
  const shared = layer.moe.sharedExpert;
  if (shared) {
    const sharedOut = await mlp(x, names.sharedExpert!, read);
    const gate = shared.gated ? linear(x, await read(names.sharedExpertGate!), 1).data : undefined;
    for (let i = 0; i < out.data.length; i++) out.data[i] += (gate ? sigmoid(gate[Math.floor(i / H)]) : 1) * sharedOut.data[i];
  }
  captures.push(capture);
  return out;
}

type MlpWeights = { gate: Float64Array; up: Float64Array; down: Float64Array; gateBias?: Float64Array; upBias?: Float64Array; downBias?: Float64Array };

function addBias(m: Matrix, bias: ArrayLike<number>): void {
  for (let i = 0; i < m.data.length; i++) m.data[i] += bias[i % m.cols];
}

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

/** Expert with its neuron k taken from neuron order[k]: gate'[k,:] = gate[order[k],:], up likewise, down'[:,k] = down[:,order[k]]. */
function renumbered(expert: MlpWeights, order: number[], H: number): MlpWeights {
  const I = order.length;
  const gate = new Float64Array(I * H);
  const up = new Float64Array(I * H);
  const down = new Float64Array(H * I);
  for (let k = 0; k < I; k++) {
    for (let h = 0; h < H; h++) {
      gate[k * H + h] = expert.gate[order[k] * H + h];
      up[k * H + h] = expert.up[order[k] * H + h];
      down[h * I + k] = expert.down[h * I + order[k]];
    }
  }
  return { gate, up, down };
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
