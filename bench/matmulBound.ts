/**
 * Lower bounds on the time of a forward pass, in one onnxruntime session at the forward's own shapes:
 * - products only (Gemm on prepacked weights, as the runtime uses them, and batched MatMul for attention);
 *   no norms, RoPE, softmax, routing, gathers or copies;
 * - with `modelOps`, also one kernel for each operation the model itself defines, the cheapest onnxruntime
 *   offers, and nothing else: RMSNorm (fused SimplifiedLayerNormalization), RoPE (com.microsoft.RotaryEmbedding),
 *   the attention mask and softmax, the router's softmax and top-k, SiLU and the SwiGLU product, the gate
 *   weighting, one gather of all routed rows and one scatter-add back per layer, the loss's log-softmax. No
 *   transposes, reshapes, per-expert bookkeeping or captures (PyTorch's forward has none of those either), and
 *   the residual adds ride on the products for free.
 * Inputs of one shape share one tensor (in a real forward an input was just written, so it is in cache), and
 * each result hands one element to the single output, so no time goes to returning outputs to JS.
 *
 * Why the bench needs them: the bar is a ratio to PyTorch eager at the same thread count. Both sides do the
 * same fp32 work, so the ratio has ceilings: torch time / each bound. A ceiling under the bar means no
 * runtime built on onnxruntime's kernels can meet it on this machine (onnxruntime-node cannot load custom
 * kernels), the first whatever it does between the products, the second even with no glue at all.
 */
import * as ort from 'onnxruntime-node';
import type { ModelSpec } from '../server/src/checkpoint/modelSpec';
import { GraphBuilder } from '../server/src/runtime/graphBuilder';
import { rmsNormOp } from '../server/src/runtime/layerGraph';
import type { Precision } from '../server/src/runtime/memoryBudget';
import { quantizedLinearOp } from '../server/src/runtime/quantizedLinear';
import { Prng } from '../test/support/prng';

/**
 * Seconds (best of `repeats`) for the products of one forward of `tokens` real tokens padded to a
 * `[batch, seqLength]` grid: as in the runtime, projections, experts and the head multiply real tokens
 * only and attention the padded grid. `routedRows[layer][expert]` is how many token rows each expert
 * multiplies (from a real routing).
 */
export async function matmulBoundSeconds(spec: ModelSpec, batch: number, seqLength: number, tokens: number, routedRows: number[][], threads: number, options: { repeats?: number; modelOps?: boolean } = {}): Promise<number> {
  const { repeats = 7, modelOps = false } = options;
  const g = new GraphBuilder('matmul-bound');
  const prng = new Prng(5);
  const random = (n: number) => Float32Array.from({ length: n }, () => prng.next() - 0.5);
  const feeds: Record<string, ort.Tensor> = {};
  const inputs = new Map<string, string>();
  let id = 0;
  const input = (dims: number[], tag = ''): string => {
    const key = `${tag}${dims.join('x')}`;
    if (!inputs.has(key)) {
      const name = `in_${key}`;
      feeds[name] = new ort.Tensor('float32', random(dims.reduce((a, b) => a * b, 1)), dims);
      inputs.set(key, g.input(name, 'float', dims));
    }
    return inputs.get(key)!;
  };
  // One element of every product, flattened: keeps every product alive without copying it out.
  const firsts: string[] = [];
  const zeros = (rank: number) => g.constInt64(new Array(rank).fill(0));
  const ones = (rank: number) => g.constInt64(new Array(rank).fill(1));
  const output = (value: string, dims: number[]) => {
    const first = g.op('Slice', [value, zeros(dims.length), ones(dims.length)]);
    firsts.push(g.op('Reshape', [first, g.constInt64([1])]));
  };
  const gemm = (rows: number, inFeatures: number, outFeatures: number) => {
    if (rows === 0) return;
    const w = g.weight(`w${id++}`, random(outFeatures * inFeatures), [outFeatures, inFeatures]);
    output(g.op('Gemm', [input([rows, inFeatures]), w], { transB: 1 }), [rows, outFeatures]);
  };

  const { numHeads, numKvHeads, headDim } = spec.attention;
  const H = spec.hiddenSize;
  // The model's own operations, each as one kernel (modelOps only).
  const op = (value: () => string, dims: number[]) => modelOps && output(value(), dims);
  const rmsNorm = (rows: number, size: number) => op(() => rmsNormOp(g, input([rows, size]), g.weight(`norm${id++}`, random(size), [size]), spec.rmsNormEps), [rows, size]);
  const rope = (heads: number) =>
    op(() => g.op('RotaryEmbedding', [input([batch, heads, seqLength, headDim]), g.constInt64([0]), input([seqLength, headDim / 2]), input([seqLength, headDim / 2])], {}, 'com.microsoft'), [batch, heads, seqLength, headDim]);
  const swiglu = (rows: number, intermediate: number) =>
    op(() => {
      const gate = input([rows, intermediate]);
      return g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), input([rows, intermediate], 'up')]);
    }, [rows, intermediate]);
  spec.layers.forEach((layer, index) => {
    rmsNorm(tokens, H);
    gemm(tokens, H, numHeads * headDim);
    gemm(tokens, H, numKvHeads * headDim);
    gemm(tokens, H, numKvHeads * headDim);
    if (spec.attention.qkNorm === 'full') {
      rmsNorm(tokens, numHeads * headDim);
      rmsNorm(tokens, numKvHeads * headDim);
    } else if (spec.attention.qkNorm === 'perHead') {
      rmsNorm(tokens * numHeads, headDim);
      rmsNorm(tokens * numKvHeads, headDim);
    }
    rope(numHeads);
    rope(numKvHeads);
    const scores = g.op('MatMul', [input([batch, numHeads, seqLength, headDim]), input([batch, numHeads, headDim, seqLength])]);
    output(scores, [batch, numHeads, seqLength, seqLength]);
    op(() => g.op('Softmax', [g.op('Add', [input([batch, numHeads, seqLength, seqLength]), input([batch, 1, seqLength, seqLength])])], { axis: -1 }), [batch, numHeads, seqLength, seqLength]);
    output(g.op('MatMul', [input([batch, numHeads, seqLength, seqLength]), input([batch, numHeads, seqLength, headDim])]), [batch, numHeads, seqLength, headDim]);
    gemm(tokens, numHeads * headDim, H);
    rmsNorm(tokens, H);
    if (layer.kind === 'dense') {
      const I = layer.mlp.intermediateSize;
      gemm(tokens, H, I);
      gemm(tokens, H, I);
      swiglu(tokens, I);
      gemm(tokens, I, H);
      return;
    }
    const { numExperts, expert, sharedExpert, topK } = layer.moe;
    gemm(tokens, H, numExperts);
    op(() => g.node('TopK', [g.op('Softmax', [input([tokens, numExperts])], { axis: -1 }), g.constInt64([topK])], { axis: -1 }, 2)[0], [tokens, topK]);
    const pairs = routedRows[index].reduce((a, b) => a + b, 0);
    const pairIndex = () => g.constInt64(Array.from({ length: pairs }, (_, i) => i % tokens));
    op(() => g.op('Gather', [input([tokens, H]), pairIndex()], { axis: 0 }), [pairs, H]);
    for (const rows of routedRows[index]) {
      gemm(rows, H, expert.intermediateSize);
      gemm(rows, H, expert.intermediateSize);
      if (rows > 0) swiglu(rows, expert.intermediateSize);
      gemm(rows, expert.intermediateSize, H);
    }
    op(() => g.op('ScatterND', [input([tokens, H]), g.op('Unsqueeze', [pairIndex(), g.constInt64([1])]), g.op('Mul', [input([pairs, H]), input([pairs, 1])])], { reduction: 'add' }), [tokens, H]);
    if (sharedExpert) {
      gemm(tokens, H, sharedExpert.intermediateSize);
      gemm(tokens, H, sharedExpert.intermediateSize);
      swiglu(tokens, sharedExpert.intermediateSize);
      gemm(tokens, sharedExpert.intermediateSize, H);
    }
  });
  rmsNorm(tokens, H);
  gemm(tokens, H, spec.vocabSize);
  op(() => {
    const targets = g.constInt64(Array.from({ length: tokens }, (_, i) => (i * 7919) % spec.vocabSize));
    return g.op('GatherElements', [g.op('LogSoftmax', [input([tokens, spec.vocabSize])], { axis: -1 }), g.op('Unsqueeze', [targets, g.constInt64([1])])], { axis: 1 });
  }, [tokens, 1]);
  g.output(g.op('Concat', firsts, { axis: 0 }), 'firsts', 'float', [firsts.length]);

  return bestRunSeconds(g, feeds, threads, repeats);
}

/**
 * Seconds of the fastest of `repeats` runs of a small in-memory graph after one warm-up, in a session
 * made as the runtime makes its own (intra-op threads, no spinning).
 */
export async function bestRunSeconds(g: GraphBuilder, feeds: Record<string, ort.Tensor>, threads: number, repeats: number): Promise<number> {
  const model = await g.serialize();
  if (model.kind !== 'bytes') throw new Error('bench graph: unexpected external data');
  const session = await ort.InferenceSession.create(model.bytes, { intraOpNumThreads: threads, interOpNumThreads: 1, extra: { session: { intra_op: { allow_spinning: '0' } } } });
  try {
    await session.run(feeds);
    let best = Infinity;
    for (let i = 0; i < repeats; i++) {
      const start = performance.now();
      await session.run(feeds);
      best = Math.min(best, (performance.now() - start) / 1000);
    }
    return best;
  } finally {
    await session.release();
  }
}

/** Rows per expert per MoE layer in a captured forward. */
export function routedRowsFromCapture(selected: Int32Array[][], numExperts: number): number[][] {
  return selected.map((layerSelections) => {
    const counts = new Array<number>(numExperts).fill(0);
    for (const experts of layerSelections) for (const e of experts) if (e >= 0) counts[e]++;
    return counts;
  });
}

/**
 * onnxruntime's own MatMul rate on a large product, the denominator for "fraction of peak": fp32 Gemm on a
 * prepacked weight, or int8 as the runtime runs it (quantizedLinearOp: DynamicQuantizeMatMul, activations
 * quantized per call, which is part of the int8 path's cost). Counted in the same FLOPs, 2·M·K·N.
 */
export async function matmulPeakGflops(threads: number, precision: Precision = 'fp32'): Promise<number> {
  const [M, K, N] = [512, 1024, 4096];
  const g = new GraphBuilder('peak');
  const a = g.input('a', 'float', [M, K]);
  const weight = Float32Array.from({ length: N * K }, (_, i) => ((i * 2654435761) % 1000) / 50000 - 0.01);
  const product = precision === 'int8' ? quantizedLinearOp(g, a, 'b', weight, N, K) : g.op('Gemm', [a, g.weight('b', weight, [N, K])], { transB: 1 });
  g.output(product, 'y', 'float', [M, N]);
  const feeds = { a: new ort.Tensor('float32', new Float32Array(M * K).fill(1), [M, K]) };
  return (2 * M * K * N) / (await bestRunSeconds(g, feeds, threads, 10)) / 1e9;
}

/** FLOPs of the forward with only the active experts counted; causal attention counts the keys each query sees. */
export function forwardFlops(spec: ModelSpec, sequences: Int32Array[]): number {
  const { numHeads, numKvHeads, headDim } = spec.attention;
  const H = spec.hiddenSize;
  const tokens = sequences.reduce((sum, s) => sum + s.length, 0);
  const attendedPairs = sequences.reduce((sum, s) => sum + (s.length * (s.length + 1)) / 2, 0);
  let flops = 2 * tokens * H * spec.vocabSize;
  for (const layer of spec.layers) {
    flops += 2 * tokens * H * (numHeads + 2 * numKvHeads) * headDim + 2 * tokens * numHeads * headDim * H;
    flops += 2 * 2 * attendedPairs * numHeads * headDim;
    if (layer.kind === 'dense') flops += 2 * tokens * 3 * H * layer.mlp.intermediateSize;
    else {
      flops += 2 * tokens * H * layer.moe.numExperts + 2 * tokens * layer.moe.topK * 3 * H * layer.moe.expert.intermediateSize;
      if (layer.moe.sharedExpert) flops += 2 * tokens * 3 * H * layer.moe.sharedExpert.intermediateSize;
    }
  }
  return flops;
}
