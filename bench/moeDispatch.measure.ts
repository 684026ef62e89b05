/**
 * The measurement behind server/src/runtime/README.md's choice of sparse MoE dispatch: one Mixtral MoE
 * block (router + top-2 of 8 experts) done three ways on the same random weights.
 *   (a) com.microsoft.MoE, onnxruntime's fused CPU kernel (interleaved SwiGLU weights);
 *   (b) our decomposed graph: TopK, then per expert NonZero -> GatherND -> SwiGLU -> ScatterND add;
 *   (c) dispatch from JS: a router session, then one session per expert on the gathered tokens.
 * Run: node --import tsx bench/moeDispatch.measure.ts
 */
import * as ort from 'onnxruntime-node';
import type { ModelSpec, MoeSpec } from '../server/src/checkpoint/modelSpec';
import { GraphBuilder } from '../server/src/runtime/graphBuilder';
import { buildSparseMoe, LayerIO, swigluOp } from '../server/src/runtime/layerGraph';
import type { LayerWeights } from '../server/src/runtime/layerWeights';
import { resolveLayerPlan } from '../server/src/runtime/runtimePlan';
import { Prng } from '../test/support/prng';

/** Expert weights with their values at hand (the runtime's Expert may also be lazy readers). */
interface Expert {
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

interface Shape {
  name: string;
  hidden: number;
  intermediate: number;
  experts: number;
  topK: number;
  tokens: number;
}

const SHAPES: Shape[] = [
  { name: 'demo-sized (H128 I320)', hidden: 128, intermediate: 320, experts: 8, topK: 2, tokens: 512 },
  { name: 'wide (H1024 I2816)', hidden: 1024, intermediate: 2816, experts: 8, topK: 2, tokens: 512 },
];

async function main(): Promise<void> {
  for (const shape of SHAPES) {
    const prng = new Prng(1);
    const { hidden: H, intermediate: I, experts: E } = shape;
    const randn = (n: number, std: number) => prng.normalArray(n, 0, std);
    const experts: Expert[] = Array.from({ length: E }, () => ({ gate: randn(I * H, 0.02), up: randn(I * H, 0.02), down: randn(H * I, 0.02) }));
    const router = randn(E * H, 0.5);
    const x = randn(shape.tokens * H, 1);
    const moe: MoeSpec = { numExperts: E, topK: shape.topK, normTopKProb: true, expert: { intermediateSize: I } };
    for (const threads of [1, 2]) {
      const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential', extra: { session: { intra_op: { allow_spinning: '0' } } } };
      const decomposed = await timeDecomposed(shape, moe, router, experts, x, options);
      const fused = await timeFused(shape, router, experts, x, options);
      const fromJs = await timeJsDispatch(shape, router, experts, x, options);
      const diff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0) / b.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      console.log(`${shape.name}, ${shape.tokens} tokens, ${threads} thread(s):`);
      console.log(`  (b) decomposed graph   ${decomposed.ms.toFixed(2).padStart(8)} ms`);
      console.log(`  (a) com.microsoft.MoE  ${fused.ms.toFixed(2).padStart(8)} ms   max rel diff vs (b) ${diff(fused.output, decomposed.output).toExponential(1)}`);
      console.log(`  (c) JS dispatch        ${fromJs.ms.toFixed(2).padStart(8)} ms   max rel diff vs (b) ${diff(fromJs.output, decomposed.output).toExponential(1)}`);
    }
  }
}

async function median(run: () => Promise<Float32Array>): Promise<{ ms: number; output: Float32Array }> {
  let output = await run();
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const start = performance.now();
    output = await run();
    times.push(performance.now() - start);
  }
  return { ms: times.sort((a, b) => a - b)[3], output };
}

async function bytesOf(g: GraphBuilder): Promise<Uint8Array> {
  const model = await g.serialize();
  if (model.kind !== 'bytes') throw new Error('expected an in-memory model');
  return model.bytes;
}

async function timeDecomposed(shape: Shape, moe: MoeSpec, router: Float32Array, experts: Expert[], x: Float32Array, options: ort.InferenceSession.SessionOptions) {
  const g = new GraphBuilder('moe_b');
  const input = g.input('x', 'float', ['tokens', shape.hidden]);
  const spec = { hiddenSize: shape.hidden } as ModelSpec;
  g.output(buildSparseMoe(g, spec, moe, input, { router } as LayerWeights, experts), 'y', 'float', ['tokens', shape.hidden]);
  const session = await ort.InferenceSession.create(await bytesOf(g), options);
  const plan = resolveLayerPlan(0, moe);
  const feeds = {
    x: new ort.Tensor('float32', x, [shape.tokens, shape.hidden]),
    [LayerIO.routerMap]: new ort.Tensor('float32', plan.routerMapTransposed, [shape.experts, shape.experts]),
    [LayerIO.expertBias]: new ort.Tensor('float32', plan.expertBias, [shape.experts]),
    [LayerIO.topK]: new ort.Tensor('int64', BigInt64Array.of(BigInt(shape.topK)), [1]),
    [LayerIO.adaptiveThreshold]: new ort.Tensor('float32', Float32Array.of(Infinity), [1]),
  };
  return median(async () => (await session.run(feeds, ['y'])).y.data as Float32Array);
}

async function timeFused(shape: Shape, router: Float32Array, experts: Expert[], x: Float32Array, options: ort.InferenceSession.SessionOptions) {
  const { hidden: H, intermediate: I, experts: E } = shape;
  // fc1 rows interleave gate and up ([E, 2I, H]: row 2i = gate_i, 2i+1 = up_i); fc2 is down as stored, [E, H, I].
  const fc1 = new Float32Array(E * 2 * I * H);
  const fc2 = new Float32Array(E * H * I);
  experts.forEach((e, j) => {
    for (let i = 0; i < I; i++) {
      fc1.set(e.gate.subarray(i * H, (i + 1) * H), ((j * 2 * I) + 2 * i) * H);
      fc1.set(e.up.subarray(i * H, (i + 1) * H), ((j * 2 * I) + 2 * i + 1) * H);
    }
    fc2.set(e.down, j * H * I);
  });
  const g = new GraphBuilder('moe_a');
  const input = g.input('x', 'float', ['tokens', H]);
  const routerT = new Float32Array(H * E);
  for (let e = 0; e < E; e++) for (let h = 0; h < H; h++) routerT[h * E + e] = router[e * H + h];
  const logits = g.op('MatMul', [input, g.weight('router', routerT, [H, E])]);
  const y = g.op('MoE', [input, logits, g.weight('fc1', fc1, [E, 2 * I, H]), '', g.weight('fc2', fc2, [E, H, I])], {
    k: shape.topK,
    activation_type: 'swiglu',
    swiglu_fusion: 1,
    activation_alpha: { float: 1 },
    activation_beta: { float: 0 },
    swiglu_limit: { float: 3.4e38 },
    normalize_routing_weights: 1,
  }, 'com.microsoft');
  g.output(y, 'y', 'float', ['tokens', H]);
  const session = await ort.InferenceSession.create(await bytesOf(g), options);
  const feeds = { x: new ort.Tensor('float32', x, [shape.tokens, H]) };
  return median(async () => (await session.run(feeds, ['y'])).y.data as Float32Array);
}

async function timeJsDispatch(shape: Shape, router: Float32Array, experts: Expert[], x: Float32Array, options: ort.InferenceSession.SessionOptions) {
  const { hidden: H, intermediate: I, experts: E, topK: k, tokens: N } = shape;
  const r = new GraphBuilder('router');
  const input = r.input('x', 'float', ['tokens', H]);
  const routerT = new Float32Array(H * E);
  for (let e = 0; e < E; e++) for (let h = 0; h < H; h++) routerT[h * E + e] = router[e * H + h];
  const probs = r.op('Softmax', [r.op('MatMul', [input, r.weight('router', routerT, [H, E])])], { axis: -1 });
  const [values, indices] = r.node('TopK', [probs, r.constInt64([k])], { axis: -1 }, 2);
  r.output(values, 'values', 'float', ['tokens', k]);
  r.output(indices, 'indices', 'int64', ['tokens', k]);
  const routerSession = await ort.InferenceSession.create(await bytesOf(r), options);
  const expertSessions = await Promise.all(
    experts.map(async (weights, e) => {
      const g = new GraphBuilder(`expert${e}`);
      const xe = g.input('x', 'float', ['tokens', H]);
      g.output(swigluOp(g, xe, 'expert', weights, I, H), 'y', 'float', ['tokens', H]);
      return ort.InferenceSession.create(await bytesOf(g), options);
    }),
  );
  return median(async () => {
    const routed = await routerSession.run({ x: new ort.Tensor('float32', x, [N, H]) });
    const topValues = routed.values.data as Float32Array;
    const topIndices = routed.indices.data as BigInt64Array;
    const out = new Float32Array(N * H);
    for (let e = 0; e < E; e++) {
      const rows: { token: number; weight: number }[] = [];
      for (let t = 0; t < N; t++) {
        let total = 0;
        for (let s = 0; s < k; s++) total += topValues[t * k + s];
        for (let s = 0; s < k; s++) if (Number(topIndices[t * k + s]) === e) rows.push({ token: t, weight: topValues[t * k + s] / total });
      }
      if (rows.length === 0) continue;
      const gathered = new Float32Array(rows.length * H);
      rows.forEach(({ token }, i) => gathered.set(x.subarray(token * H, (token + 1) * H), i * H));
      const y = (await expertSessions[e].run({ x: new ort.Tensor('float32', gathered, [rows.length, H]) })).y.data as Float32Array;
      rows.forEach(({ token, weight }, i) => {
        for (let d = 0; d < H; d++) out[token * H + d] += weight * y[i * H + d];
      });
    }
    return out;
  });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
