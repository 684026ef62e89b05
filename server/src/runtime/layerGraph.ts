import type { ClampedSwiglu, LayerSpec, ModelSpec, MoeSpec, WeightSource } from '../checkpoint/modelSpec';
import { GraphBuilder, WeightData } from './graphBuilder';
import { OnnxDType } from './onnxSchema';
import { layerWeights, type LayerWeights, type MlpWeights } from './layerWeights';
import type { Precision } from './memoryBudget';
import { deepseekTopK } from './deepseekRouting';
import { mlaAttentionContext } from './mlaAttention';
import { rotaryDimOf } from './positionTables';
import { quantizedLinearOp } from './quantizedLinear';
import { attentionSinksSoftmax, slidingWindowBias } from './attentionExtras';
import { sparsemixerRouting } from './sparsemixerGraph';

/** Names of a decoder-layer graph's inputs and outputs, shared by the builder and the engine. */
export const LayerIO = {
  hidden: 'hidden', // [tokens, hidden]: the batch's real tokens only, sequence after sequence (no padding)
  tokenSlots: 'token_slots', // [tokens] int64: each token's place in the padded [batch x seq] grid
  gridRows: 'grid_rows', // [batch x seq] int64: the token each grid place reads (padding: any token)
  ropeCos: 'rope_cos', // [seq, headDim]
  ropeSin: 'rope_sin',
  attentionBias: 'attention_bias', // [batch, 1, 1, seq, seq]: 0 where a query may attend, -inf elsewhere
  routerMap: 'router_map', // [E, E']: W_RM^T, applied to router logits
  expertBias: 'expert_bias', // [E']: 0 for kept experts, -inf for masked ones
  topK: 'top_k', // [1] int64
  adaptiveThreshold: 'adaptive_threshold', // [1]: keep experts after the first only when p1 - p2 <= T
  hiddenOut: 'hidden_out',
  moeInput: 'moe_input', // [tokens, hidden]: what the router and experts see
  routerLogits: 'router_logits', // [tokens, E'] after mapping, before the mask
  selectedExperts: 'selected_experts', // [tokens, k] int32, -1 where a slot was dropped
  gateWeights: 'gate_weights', // [tokens, k]
  expertOutputNorms: 'expert_output_norms', // [tokens, k]: ||expert output|| before gating
} as const;

/** How a layer graph is built: `precision` of the big projections (attention, experts, MLPs; default fp32). */
export interface LayerGraphOptions {
  precision?: Precision;
  /**
   * Standard ONNX operators only, for an exported model any runtime loads: RoPE spelt out (Split, Neg,
   * Concat, Mul, Add) over cos/sin tables of any rank (the export's are per row, [batch, 1, seq, d]),
   * instead of onnxruntime's fused com.microsoft.RotaryEmbedding over the runtime's [seq, d] tables.
   */
  portable?: boolean;
}

/**
 * Decoder layer `index` as the checkpoint stores it (no merged experts): what the runtime worker loads and
 * what the layer writer (layerWriterWorker.ts) writes ahead for it, built by this one function so that both
 * threads' files give the same session.
 */
export function checkpointLayerGraph(spec: ModelSpec, weights: WeightSource, index: number, precision?: Precision): GraphBuilder {
  const layer = spec.layers[index];
  if (!layer) throw new Error(`layer ${index} is not in the model (${spec.layers.length} layers)`);
  return buildLayerGraph(spec, layer, layerWeights(spec, weights, layer), undefined, { precision });
}

/**
 * Builds one decoder layer (attention + MoE or dense MLP) as an ONNX graph, HF semantics throughout.
 * `experts` overrides the checkpoint's experts, which is how merged plans get their own weights.
 * With `precision: 'int8'` the projections of attention, experts, shared expert and dense MLP multiply int8
 * weights (quantizedLinear.ts), as the head's lm_head does (headGraph.ts); router, norms and embedding stay fp32, so
 * routing sees exact weights.
 */
export function buildLayerGraph(spec: ModelSpec, layer: LayerSpec, weights: LayerWeights, experts?: MlpWeights[], options: LayerGraphOptions = {}): GraphBuilder {
  const precision = options.precision ?? 'fp32';
  const g = new GraphBuilder(`layer${layer.index}`);
  const { numHeads, numKvHeads, headDim } = spec.attention;
  const H = spec.hiddenSize;
  const layerInput = g.input(LayerIO.hidden, 'float', ['tokens', H]);
  // Granite MoE scales the embeddings; the first layer does it, so the engine's embedding lookup stays a copy.
  const embeddingMultiplier = spec.scaling?.embedding ?? 1;
  const rows = layer.index === 0 && embeddingMultiplier !== 1 ? g.op('Mul', [layerInput, g.constFloat([embeddingMultiplier])]) : layerInput;
  const residualMultiplier = spec.scaling?.residual ?? 1;
  const tokenSlots = g.input(LayerIO.tokenSlots, 'int64', ['tokens']);
  const gridRows = g.input(LayerIO.gridRows, 'int64', ['grid']);
  const rotaryDim = rotaryDimOf(spec.attention);
  const cos = g.input(LayerIO.ropeCos, 'float', ['seq', rotaryDim]);
  const sin = g.input(LayerIO.ropeSin, 'float', ['seq', rotaryDim]);
  const attentionBias = g.input(LayerIO.attentionBias, 'float', ['batch', 1, 1, 'seq', 'seq']);
  const w = (name: string, data: WeightData, dims: number[]) => g.weight(name, data, dims);
  const rmsNorm = (x: string, name: string, weight: WeightData, size: number) => rmsNormOp(g, x, w(name, weight, [size]), spec.rmsNormEps);
  // Phi-MoE: nn.LayerNorm (weight and bias) in the two places the others use RMSNorm.
  const blockNorm = (x: string, name: string, weight: WeightData, bias: WeightData | undefined) =>
    spec.layerNorm ? layerNormOp(g, x, w(name, weight, [H]), w(`${name}_bias`, bias!, [H]), spec.rmsNormEps) : rmsNorm(x, name, weight, H);

  // Tokens are rows of a 2-D matrix, so every projection is a Gemm on the weight exactly as stored, and
  // only real tokens are rows: padding costs nothing outside attention. Attention alone works on the
  // padded [batch, seq] grid, gathering q, k and v into it and the result back out. Padding places read
  // some real token: as keys the bias hides them, as values they get weight 0, as queries they are dropped.
  const biasShape = g.op('Shape', [attentionBias]);
  const batchAndSeq = g.op('Concat', [g.op('Slice', [biasShape, g.constInt64([0]), g.constInt64([1])]), g.op('Slice', [biasShape, g.constInt64([3]), g.constInt64([4])])], { axis: 0 });

  // Attention.
  const x = blockNorm(rows, 'input_norm', weights.inputNorm, weights.inputNormBias);
  const mla = spec.attention.mla;
  // Grouped-query attention; DeepSeek's latent attention is mlaAttention.ts.
  const gqaContext = (): string => {
    const project = (name: 'q' | 'k' | 'v', heads: number, bias?: WeightData) =>
      linearOp(g, x, `${name}_proj`, weights[name], heads * headDim, H, bias && w(`${name}_bias`, bias, [heads * headDim]), precision);
    let q = project('q', numHeads, weights.qBias);
    let k = project('k', numKvHeads, weights.kBias);
    const v = project('v', numKvHeads, weights.vBias);
    if (spec.attention.qkNorm === 'full') {
      q = rmsNorm(q, 'q_norm', weights.qNorm!, numHeads * headDim);
      k = rmsNorm(k, 'k_norm', weights.kNorm!, numKvHeads * headDim);
    }
    const toHeads = (t: string, heads: number) => g.op('Reshape', [g.op('Gather', [t, gridRows], { axis: 0 }), g.op('Concat', [batchAndSeq, g.constInt64([heads, headDim])], { axis: 0 })]);
    let q4 = toHeads(q, numHeads);
    let k4 = toHeads(k, numKvHeads);
    if (spec.attention.qkNorm === 'perHead') {
      q4 = rmsNorm(q4, 'q_norm', weights.qNorm!, headDim);
      k4 = rmsNorm(k4, 'k_norm', weights.kNorm!, headDim);
    }
    const headsFirst = (t: string) => g.op('Transpose', [t], { perm: [0, 2, 1, 3] });
    // t cos + rotate_half(t) sin, rotate_half (x1, x2) -> (-x2, x1), as one com.microsoft.RotaryEmbedding
    // over [batch, heads, seq, rotaryDim]: the tables' halves are equal (HF's cat(freqs, freqs)), so the op's
    // half-width caches are their first halves, and row j is position j (position_ids = offset 0). Spelt
    // as Split/Neg/Concat/Mul/Mul/Add it was six passes over q and k, each into fresh memory: 10-15% of an
    // int8 OLMoE layer's time (ORT profile, 2048 tokens).
    let halves: [string, string] | undefined;
    const rotate = (t: string) => {
      if (options.portable) {
        const [x1, x2] = g.node('Split', [t, g.constInt64([rotaryDim / 2, rotaryDim / 2])], { axis: -1 }, 2);
        const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
        return g.op('Add', [g.op('Mul', [t, cos]), g.op('Mul', [rotated, sin])]);
      }
      halves ??= [cos, sin].map((table) => g.op('Slice', [table, g.constInt64([0]), g.constInt64([rotaryDim / 2]), g.constInt64([1])])) as [string, string];
      return g.op('RotaryEmbedding', [t, g.constInt64([0]), halves[0], halves[1]], { interleaved: 0 }, 'com.microsoft');
    };
    // Partial rotary (GLM-4.5): the first rotaryDim of each head rotate, the rest pass through.
    const rope = (t: string) => {
      if (rotaryDim === headDim) return rotate(t);
      const [rotary, pass] = g.node('Split', [t, g.constInt64([rotaryDim, headDim - rotaryDim])], { axis: -1 }, 2);
      return g.op('Concat', [rotate(rotary), pass], { axis: -1 });
    };
    const group = numHeads / numKvHeads;
    // GQA without copying k/v: each kv head's group of query heads is stacked along the rows,
    // [batch, kv, group x seq, d], so both products are plain batched MatMuls with no broadcasting
    // (onnxruntime then folds k's transpose and the scale into one FusedMatMul).
    const qStacked = g.op('Reshape', [rope(headsFirst(q4)), g.constInt64([0, numKvHeads, -1, headDim])]);
    const kHeads = rope(headsFirst(k4));
    const vHeads = headsFirst(toHeads(v, numKvHeads));
    const scores = g.op('Mul', [g.op('MatMul', [qStacked, g.op('Transpose', [kHeads], { perm: [0, 1, 3, 2] })]), g.constFloat([spec.attention.scale ?? 1 / Math.sqrt(headDim)])]);
    // The [batch, 1, 1, seq, seq] bias broadcasts over kv heads and groups once the rows are split again.
    const groupedShape = g.op('Concat', [g.constInt64([0, numKvHeads, group]), g.op('Slice', [biasShape, g.constInt64([3]), g.constInt64([5])])], { axis: 0 });
    // GPT-OSS: sliding-window layers mask keys `size` or more places back; attention sinks join each softmax row.
    const window = spec.attention.slidingWindow;
    const layerBias = window?.layers.includes(layer.index) ? g.op('Add', [attentionBias, slidingWindowBias(g, biasShape, window.size)]) : attentionBias;
    const maskedScores = g.op('Add', [g.op('Reshape', [scores, groupedShape]), layerBias]);
    const probs = weights.sinks ? attentionSinksSoftmax(g, maskedScores, w('sinks', weights.sinks, [1, numKvHeads, group, 1, 1]), biasShape) : g.op('Softmax', [maskedScores], { axis: -1 });
    const context = g.op('MatMul', [g.op('Reshape', [probs, g.constInt64([0, numKvHeads, -1, 0])]), vHeads]);
    const grid = g.op('Reshape', [g.op('Transpose', [g.op('Reshape', [context, g.constInt64([0, numHeads, -1, headDim])])], { perm: [0, 2, 1, 3] }), g.constInt64([-1, numHeads * headDim])]);
    return g.op('Gather', [grid, tokenSlots], { axis: 0 });
  };
  const merged = mla
    ? mlaAttentionContext({ g, x, hidden: H, numHeads, gridRows, tokenSlots, batchAndSeq, cos, sin, attentionBias, scale: spec.attention.scale ?? 1 / Math.sqrt(headDim), linear: (input, name, weight, outDim, inDim) => linearOp(g, input, name, weight, outDim, inDim, undefined, precision), rmsNorm: (input, name, weight, size, eps) => rmsNormOp(g, input, w(name, weight, [size]), eps) }, mla, weights.mla!)
    : gqaContext();
  // Residual connections ride on the products: Gemm's C here, the experts' scatter-add target below.
  // o_proj's bias (GPT-OSS, Phi-MoE) joins the residual in Gemm's C; a residual multiplier scales the product only (Granite has no o bias).
  const oAddend = weights.oBias ? g.op('Add', [rows, w('o_bias', weights.oBias, [H])]) : rows;
  const attended = linearOp(g, merged, 'o_proj', weights.o, H, numHeads * (mla ? mla.vHeadDim : headDim), oAddend, precision, residualMultiplier);

  // Feed-forward.
  const normed = blockNorm(attended, 'post_attention_norm', weights.postAttentionNorm, weights.postAttentionNormBias);
  // A residual multiplier other than 1 (Granite MoE) scales the block's output, so it cannot ride on the products.
  const ownResidual = residualMultiplier === 1 ? attended : undefined;
  const block =
    layer.kind === 'dense'
      ? swigluOp(g, normed, 'mlp', weights.mlp!, layer.mlp.intermediateSize, H, ownResidual, precision)
      : buildSparseMoe(g, spec, layer.moe, normed, weights, experts ?? weights.experts!, ownResidual, precision);
  const out = ownResidual ? block : g.op('Add', [attended, g.op('Mul', [block, g.constFloat([residualMultiplier])])]);
  g.output(out, LayerIO.hiddenOut, 'float', ['tokens', H]);
  return g;
}

/**
 * RMSNorm over the last axis, `x / sqrt(mean(x²) + eps) * weight`, in the exact pattern onnxruntime fuses
 * into one SimplifiedLayerNormalization kernel (fp32 throughout, as transformers computes it).
 */
export function rmsNormOp(g: GraphBuilder, x: string, weight: string, eps: number): string {
  const variance = g.op('ReduceMean', [g.op('Pow', [x, g.constFloat([2])])], { axes: [-1], keepdims: 1 });
  const std = g.op('Sqrt', [g.op('Add', [variance, g.constFloat([eps])])]);
  return g.op('Mul', [g.op('Div', [x, std]), weight]);
}

/** nn.LayerNorm over the last axis: ONNX LayerNormalization (opset 17), fp32 statistics as torch computes them. */
export function layerNormOp(g: GraphBuilder, x: string, weight: string, bias: string, eps: number): string {
  return g.op('LayerNormalization', [x, weight, bias], { axis: -1, epsilon: { float: eps } });
}

/**
 * y = x W^T (+ c) on rows: Gemm with transB reads the HF [out, in] layout as is, so no transposed copy is made.
 * `addend` (Gemm's C) is a bias row or a residual [rows, out], added in the same pass. Every projection goes
 * through here, the head's lm_head too; with precision int8 it is quantizedLinearOp's instead.
 */
export function linearOp(g: GraphBuilder, x: string, name: string, weight: WeightData, outDim: number, inDim: number, addend?: string, precision: Precision = 'fp32', scale = 1): string {
  // `scale` (Gemm's alpha) multiplies the product only, as Granite MoE's residual multiplier does: C + scale · x W^T.
  if (precision === 'int8') {
    if (scale === 1) return quantizedLinearOp(g, x, name, weight, outDim, inDim, addend);
    const product = g.op('Mul', [quantizedLinearOp(g, x, name, weight, outDim, inDim), g.constFloat([scale])]);
    return addend ? g.op('Add', [addend, product]) : product;
  }
  return g.op('Gemm', [x, g.weight(name, weight, [outDim, inDim]), ...(addend ? [addend] : [])], { transB: 1, ...(scale !== 1 && { alpha: { float: scale } }) });
}

/**
 * down(silu(gate x) * up x), plus `residual` when given. GPT-OSS experts: each projection has a bias, and the
 * activation is the clamped SwiGLU, (clamp(up, ±limit) + 1) · g · sigmoid(alpha · g) with g = min(gate, limit).
 */
export function swigluOp(g: GraphBuilder, x: string, name: string, mlp: MlpWeights, intermediate: number, hidden: number, residual?: string, precision: Precision = 'fp32', clamped?: ClampedSwiglu): string {
  const bias = (data: WeightData | undefined, suffix: string, size: number) => (data ? g.weight(`${name}/${suffix}_bias`, data, [size]) : undefined);
  let gate = linearOp(g, x, `${name}/gate`, mlp.gate, intermediate, hidden, bias(mlp.gateBias, 'gate', intermediate), precision);
  let up = linearOp(g, x, `${name}/up`, mlp.up, intermediate, hidden, bias(mlp.upBias, 'up', intermediate), precision);
  let activated: string;
  if (clamped) {
    gate = g.op('Min', [gate, g.constFloat([clamped.limit])]);
    up = g.op('Max', [g.op('Min', [up, g.constFloat([clamped.limit])]), g.constFloat([-clamped.limit])]);
    const glu = g.op('Mul', [gate, g.op('Sigmoid', [g.op('Mul', [gate, g.constFloat([clamped.alpha])])])]);
    activated = g.op('Mul', [g.op('Add', [up, g.constFloat([1])]), glu]);
  } else {
    activated = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
  }
  const downBias = bias(mlp.downBias, 'down', hidden);
  const addend = downBias && residual ? g.op('Add', [residual, downBias]) : (downBias ?? residual);
  return linearOp(g, activated, `${name}/down`, mlp.down, hidden, intermediate, addend, precision);
}

/**
 * Router + top-k + sparse expert dispatch. Each expert runs only on the tokens routed to it (NonZero ->
 * GatherND -> SwiGLU -> ScatterND add), so the cost grows with k, not with the number of experts.
 * The plan's knobs (mapping, mask, k, adaptive threshold) are graph inputs: changing them needs no rebuild.
 * Returns the block's output, added onto `residual` when given (the scatter-add starts from it).
 * `precision` is the experts' and shared expert's; router and shared-expert gate are always fp32.
 */
export function buildSparseMoe(g: GraphBuilder, spec: ModelSpec, moe: MoeSpec, x: string, weights: LayerWeights, experts: MlpWeights[], residual?: string, precision: Precision = 'fp32'): string {
  const H = spec.hiddenSize;
  const linear = (input: string, name: string, weight: WeightData, outDim: number, inDim: number) => linearOp(g, input, name, weight, outDim, inDim);
  const swiglu = (input: string, name: string, mlp: MlpWeights, intermediate: number) => swigluOp(g, input, name, mlp, intermediate, H, undefined, precision, moe.clampedSwiglu);
  const E = moe.numExperts;
  const routedExperts = experts.length;
  const routerMap = g.input(LayerIO.routerMap, 'float', [E, routedExperts]);
  const expertBias = g.input(LayerIO.expertBias, 'float', [routedExperts]);
  const topK = g.input(LayerIO.topK, 'int64', [1]);
  const threshold = g.input(LayerIO.adaptiveThreshold, 'float', [1]);

  // GPT-OSS's router has a bias; a mapped router maps the biased logits, so W' = M^T W and b' = M^T b alike.
  const routerBias = weights.routerBias && g.weight('router_bias', weights.routerBias, [E]);
  const logits = g.op('MatMul', [linearOp(g, x, 'router', weights.router!, E, H, routerBias), routerMap]);
  let topProbs: string, topIndices: string, gap: string, valid: string;
  if (moe.routing) {
    // DeepSeek's sigmoid / grouped router (deepseekRouting.ts); adaptive gating reads the gap of its first two weights.
    ({ topScores: topProbs, topIndices, valid } = deepseekTopK(g, moe.routing, { logits, expertBias, topK, routerMap, routerBias: weights.correctionBias, numExperts: E, routedExperts }));
    // Signed: the first choice's weight minus the second's (the choice order is not the weight order); 0 when k = 1.
    const first = g.op('Slice', [topProbs, g.constInt64([0]), g.constInt64([1]), g.constInt64([1])]);
    const second = g.op('Slice', [g.op('Concat', [topProbs, first], { axis: 1 }), g.constInt64([1]), g.constInt64([2]), g.constInt64([1])]);
    gap = g.op('Sub', [first, second]);
  } else {
    const probs = g.op('Softmax', [g.op('Add', [logits, expertBias])], { axis: -1 });
    [topProbs, topIndices] = g.node('TopK', [probs, topK], { axis: -1, largest: 1, sorted: 1 }, 2);
    // Adaptive gating: the slots after the first survive only when p1 - p2 <= T; masked experts (p = 0) never run.
    const [bestTwo] = g.node('TopK', [probs, g.constInt64([Math.min(2, routedExperts)])], { axis: -1, largest: 1, sorted: 1 }, 2);
    gap = g.op('Sub', [g.op('ReduceMax', [bestTwo], { axes: [-1], keepdims: 1 }), g.op('ReduceMin', [bestTwo], { axes: [-1], keepdims: 1 })]);
    valid = g.op('Greater', [topProbs, g.constFloat([0])]);
  }
  const slots = g.op('Range', [g.scalarInt64(0), g.op('Squeeze', [topK, g.constInt64([0])]), g.scalarInt64(1)]);
  const isFirstSlot = g.op('Equal', [slots, g.scalarInt64(0)]);
  const keep = g.op('And', [g.op('Or', [isFirstSlot, g.op('LessOrEqual', [gap, threshold])]), valid]);
  let gateWeights = g.op('Mul', [topProbs, g.op('Cast', [keep], { to: OnnxDType.float })]);
  if (moe.normTopKProb) gateWeights = g.op('Div', [gateWeights, g.op('ReduceSum', [gateWeights, g.constInt64([-1])], { keepdims: 1 })]);
  if (moe.routing && moe.routing.scalingFactor !== 1) gateWeights = g.op('Mul', [gateWeights, g.constFloat([moe.routing.scalingFactor])]);
  let selected = g.op('Where', [keep, topIndices, g.constInt64([-1])]);
  if (moe.sparsemixer) {
    // Phi-MoE: sparsemixer picks and weights the two experts; adaptive gating still reads the softmax gap above.
    const mixed = sparsemixerRouting(g, g.op('Add', [logits, expertBias]), moe.sparsemixer.jitterEps, topK, gap, threshold);
    selected = mixed.selected;
    gateWeights = mixed.gateWeights;
  }

  const flatSelected = g.op('Reshape', [selected, g.constInt64([-1])]);
  const flatWeights = g.op('Reshape', [gateWeights, g.constInt64([-1, 1])]);
  let combined = residual ?? g.op('ConstantOfShape', [g.op('Shape', [x])], {});
  let norms = g.op('ConstantOfShape', [g.op('Shape', [flatSelected])], {});
  for (let e = 0; e < routedExperts; e++) {
    // (token, slot) pairs routed to e, as ScatterND/GatherND indices [n, 1].
    const pairs = g.op('Transpose', [g.op('NonZero', [g.op('Equal', [flatSelected, g.constInt64([e])])])], { perm: [1, 0] });
    const tokens = g.op('Div', [pairs, topK]);
    const output = swiglu(g.op('GatherND', [x, tokens]), `expert${e}`, experts[e], moe.expert.intermediateSize);
    norms = g.op('ScatterND', [norms, pairs, g.op('ReduceL2', [output], { axes: [1], keepdims: 0 })]);
    combined = g.op('ScatterND', [combined, tokens, g.op('Mul', [output, g.op('GatherND', [flatWeights, pairs])])], { reduction: 'add' });
  }
  if (moe.sharedExpert) {
    let shared = swiglu(x, 'shared_expert', weights.sharedExpert!, moe.sharedExpert.intermediateSize);
    if (moe.sharedExpert.gated) shared = g.op('Mul', [shared, g.op('Sigmoid', [linear(x, 'shared_expert_gate', weights.sharedExpertGate!, 1, H)])]);
    combined = g.op('Add', [combined, shared]);
  }
  g.output(x, LayerIO.moeInput, 'float', ['tokens', H]);
  g.output(logits, LayerIO.routerLogits, 'float', ['tokens', routedExperts]);
  // int32 for the caller: converting int64 (BigInt in JS) cost ~0.4 ms a demo forward; expert ids fit easily.
  g.output(g.op('Cast', [selected], { to: OnnxDType.int32 }), LayerIO.selectedExperts, 'int32', ['tokens', 'k']);
  g.output(gateWeights, LayerIO.gateWeights, 'float', ['tokens', 'k']);
  g.output(g.op('Reshape', [norms, g.op('Shape', [selected])]), LayerIO.expertOutputNorms, 'float', ['tokens', 'k']);
  return combined;
}
