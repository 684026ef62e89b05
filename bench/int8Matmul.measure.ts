/**
 * The measurement behind server/src/runtime/README.md's choice of int8 kernel: one projection y = x W^T at
 * the expert and attention shapes of OLMoE-1B-7B and Qwen3-30B-A3B, done four ways on the same random weights:
 *   fp32   Gemm(transB=1) on the weight as stored (what the fp32 runtime runs);
 *   dqmm   com.microsoft.DynamicQuantizeMatMul, weights int8 [in, out] with one scale per output channel;
 *   onnx   standard ONNX DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul, the same weights;
 *   u8u8   DynamicQuantizeMatMul with uint8 weights and zero point 128 (no u8 x s8 saturation on CPUs without VNNI).
 * All four run interleaved, one call each in turn, so drift on a busy machine hits them alike; each figure is
 * a median of the interleaved calls. The relative error is ||y - y_fp32|| / ||y_fp32||.
 * Run: node --import tsx bench/int8Matmul.measure.ts [threads...]
 */
import { loadavg } from 'node:os';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../server/src/runtime/graphBuilder';
import { quantizePerOutputChannel } from '../server/src/runtime/quantize';
import { Prng } from '../test/support/prng';

interface Shape {
  name: string;
  inDim: number;
  outDim: number;
}

const SHAPES: Shape[] = [
  { name: 'OLMoE expert gate/up', inDim: 2048, outDim: 1024 },
  { name: 'OLMoE expert down', inDim: 1024, outDim: 2048 },
  { name: 'Qwen3 expert gate/up', inDim: 2048, outDim: 768 },
  { name: 'Qwen3 q_proj', inDim: 2048, outDim: 4096 },
];
const ROWS = [64, 256, 1024];
const REPEATS = 9;

type Variant = 'fp32' | 'dqmm' | 'onnx' | 'u8u8';
const VARIANTS: Variant[] = ['fp32', 'dqmm', 'onnx', 'u8u8'];

async function main(): Promise<void> {
  const threadCounts = process.argv.slice(2).map(Number).filter((t) => t > 0);
  console.log(`load average at start: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log('shape                   rows  threads  fp32 ms  dqmm ms (x, err)          onnx ms (x, err)          u8u8 ms (x, err)');
  for (const threads of threadCounts.length ? threadCounts : [1, 2]) {
    for (const shape of SHAPES) {
      const prng = new Prng(3);
      const weight = prng.normalArray(shape.outDim * shape.inDim, 0, 0.02);
      const sessions = new Map<Variant, ort.InferenceSession>();
      for (const variant of VARIANTS) sessions.set(variant, await session(build(variant, weight, shape), threads));
      for (const rows of ROWS) {
        const x = new ort.Tensor('float32', prng.normalArray(rows * shape.inDim, 0, 1), [rows, shape.inDim]);
        const times = new Map<Variant, number[]>(VARIANTS.map((v) => [v, []]));
        const outputs = new Map<Variant, Float32Array>();
        for (let i = 0; i <= REPEATS; i++) {
          for (const variant of VARIANTS) {
            const start = performance.now();
            const y = (await sessions.get(variant)!.run({ x })).y.data as Float32Array;
            if (i > 0) times.get(variant)!.push(performance.now() - start);
            outputs.set(variant, y);
          }
        }
        const ms = (v: Variant) => median(times.get(v)!);
        const cell = (v: Variant) => `${ms(v).toFixed(2).padStart(7)} (${(ms('fp32') / ms(v)).toFixed(1)}x, ${relativeError(outputs.get(v)!, outputs.get('fp32')!).toExponential(1)})`.padEnd(26);
        console.log(`${shape.name.padEnd(22)} ${String(rows).padStart(5)}  ${String(threads).padStart(7)}  ${ms('fp32').toFixed(2).padStart(7)}  ${cell('dqmm')}${cell('onnx')}${cell('u8u8')}`);
      }
      for (const s of sessions.values()) await s.release();
    }
  }
  console.log(`load average at end: ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
}

function build(variant: Variant, weight: Float32Array, { inDim, outDim }: Shape): GraphBuilder {
  const g = new GraphBuilder(variant);
  const x = g.input('x', 'float', ['rows', inDim]);
  let y: string;
  if (variant === 'fp32') y = g.op('Gemm', [x, g.weight('w', weight, [outDim, inDim])], { transB: 1 });
  else {
    const { values, scales } = quantizePerOutputChannel(weight, outDim, inDim);
    const scale = g.weight('w_scale', scales, [outDim]);
    if (variant === 'u8u8') {
      const shifted = Uint8Array.from(values, (v) => v + 128);
      const zeroPoint = g.typedWeight('w_zero', 'uint8', new Uint8Array(outDim).fill(128), [outDim]);
      y = g.op('DynamicQuantizeMatMul', [x, g.typedWeight('w', 'uint8', shifted, [inDim, outDim]), scale, zeroPoint], {}, 'com.microsoft');
    } else if (variant === 'dqmm') {
      y = g.op('DynamicQuantizeMatMul', [x, g.typedWeight('w', 'int8', values, [inDim, outDim]), scale], {}, 'com.microsoft');
    } else {
      const [xq, xScale, xZero] = g.node('DynamicQuantizeLinear', [x], {}, 3);
      const product = g.op('MatMulInteger', [xq, g.typedWeight('w', 'int8', values, [inDim, outDim]), xZero]);
      y = g.op('Mul', [g.op('Mul', [g.op('Cast', [product], { to: 1 }), xScale]), scale]);
    }
  }
  g.output(y, 'y', 'float', ['rows', outDim]);
  return g;
}

async function session(g: GraphBuilder, threads: number): Promise<ort.InferenceSession> {
  const model = await g.serialize();
  if (model.kind !== 'bytes') throw new Error('expected an in-memory model');
  return ort.InferenceSession.create(model.bytes, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', extra: { session: { intra_op: { allow_spinning: '0' } } } });
}

function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

function relativeError(y: Float32Array, reference: Float32Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < y.length; i++) {
    diff += (y[i] - reference[i]) ** 2;
    norm += reference[i] ** 2;
  }
  return Math.sqrt(diff / norm);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
