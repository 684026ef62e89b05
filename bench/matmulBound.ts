/**
 * A lower bound on the time of a forward pass: only its matrix products, at the forward's own shapes, in one
 * onnxruntime session (Gemm on prepacked weights, as the runtime uses them, and batched MatMul for attention).
 * No norms, RoPE, softmax, routing, gathers or copies. Inputs of one shape share one tensor (in a real forward a
 * product's input was just written, so it is in cache), and each product hands one element to the single
 * output, so no time goes to returning product-sized outputs to JS.
 *
 * Why the bench needs it: the bar is a ratio to PyTorch eager at the same thread count. Both sides do the same
 * fp32 FLOPs, so when PyTorch already runs close to the machine's matmul rate the ratio has a ceiling:
 * torch time / this bound. A ceiling under the bar means no runtime built on onnxruntime's kernels can meet
 * it on this machine, whatever it does between the products.
 */
import * as ort from 'onnxruntime-node';
import type { ModelSpec } from '../server/src/checkpoint/modelSpec';
import { GraphBuilder } from '../server/src/runtime/graphBuilder';
import { Prng } from '../test/support/prng';

/**
 * Seconds (best of `repeats`) for the products of one forward of `tokens` real tokens padded to a
 * `[batch, seqLength]` grid: as in the runtime, projections, experts and the head multiply real tokens
 * only and attention the padded grid. `routedRows[layer][expert]` is how many token rows each expert
 * multiplies (from a real routing).
 */
export async function matmulBoundSeconds(spec: ModelSpec, batch: number, seqLength: number, tokens: number, routedRows: number[][], threads: number, repeats = 7): Promise<number> {
  const g = new GraphBuilder('matmul-bound');
  const prng = new Prng(5);
  const random = (n: number) => Float32Array.from({ length: n }, () => prng.next() - 0.5);
  const feeds: Record<string, ort.Tensor> = {};
  const inputs = new Map<string, string>();
  let id = 0;
  const input = (dims: number[]): string => {
    const key = dims.join('x');
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
  spec.layers.forEach((layer, index) => {
    gemm(tokens, H, numHeads * headDim);
    gemm(tokens, H, numKvHeads * headDim);
    gemm(tokens, H, numKvHeads * headDim);
    const scores = g.op('MatMul', [input([batch, numHeads, seqLength, headDim]), input([batch, numHeads, headDim, seqLength])]);
    output(scores, [batch, numHeads, seqLength, seqLength]);
    output(g.op('MatMul', [input([batch, numHeads, seqLength, seqLength]), input([batch, numHeads, seqLength, headDim])]), [batch, numHeads, seqLength, headDim]);
    gemm(tokens, numHeads * headDim, H);
    if (layer.kind === 'dense') {
      const I = layer.mlp.intermediateSize;
      gemm(tokens, H, I);
      gemm(tokens, H, I);
      gemm(tokens, I, H);
      return;
    }
    const { numExperts, expert, sharedExpert } = layer.moe;
    gemm(tokens, H, numExperts);
    for (const rows of routedRows[index]) {
      gemm(rows, H, expert.intermediateSize);
      gemm(rows, H, expert.intermediateSize);
      gemm(rows, expert.intermediateSize, H);
    }
    if (sharedExpert) {
      gemm(tokens, H, sharedExpert.intermediateSize);
      gemm(tokens, H, sharedExpert.intermediateSize);
      gemm(tokens, sharedExpert.intermediateSize, H);
    }
  });
  gemm(tokens, H, spec.vocabSize);
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
