import * as ort from 'onnxruntime-node';
import { GraphBuilder } from './graphBuilder';

/**
 * How many int8 levels a weight may use on this CPU: 127, or 63 where onnxruntime's int8 kernel would
 * overflow with 127.
 *
 * DynamicQuantizeMatMul multiplies uint8 activations by int8 weights. On x86 CPUs with VNNI (AVX-512 VNNI,
 * AVX-VNNI) and on ARM (sdot/udot) the products are summed in int32. On AVX2-only CPUs (e.g. AMD Zen 3, Intel
 * before Ice Lake) onnxruntime's kernel uses vpmaddubsw, which adds each pair of byte products in a
 * saturating int16: 255 x 127 x 2 = 64,770 > 32,767, so large activations against large weights are cut.
 * Measured here on an AMD EPYC (family 25 model 1, AVX2, no AVX-512): logits 12-16% of their scale away
 * from the float64 reference with 127 levels, against 1.6-4% on VNNI machines; with 63 levels
 * (255 x 63 x 2 = 32,130, no overflow) every int8 test passes. onnxruntime's quantization tool offers the
 * same remedy (`reduce_range`: 7-bit weights). It costs half a bit of weight precision and no speed.
 *
 * Rather than guess from CPU flags (which differ by OS and are not what onnxruntime dispatches on), a tiny
 * product whose byte pairs would overflow is run once per process: exact sums keep 127.
 */
export function int8WeightLevels(): Promise<number> {
  return (probe ??= measureLevels());
}

let probe: Promise<number> | undefined;

/** Another thread's probe result for this process (the layer writer quantizes as the runtime worker does). */
export function presetInt8WeightLevels(levels: number): void {
  probe = Promise.resolve(levels);
}

/** Rows, inner size and columns of the probe: a block large enough for onnxruntime's main kernel. */
const [M, K, N] = [16, 128, 32];

async function measureLevels(): Promise<number> {
  const g = new GraphBuilder('int8_probe');
  const x = g.input('x', 'float', [M, K]);
  // Every weight 127 with scale 1, every activation 1: dynamic quantization maps x to uint8 255 (scale 1/255).
  const weight = g.typedWeight('w', 'int8', new Int8Array(K * N).fill(127), [K, N]);
  const scales = g.weight('s', new Float32Array(N).fill(1), [N]);
  g.output(g.op('DynamicQuantizeMatMul', [x, weight, scales], {}, 'com.microsoft'), 'y', 'float', [M, N]);
  const model = await g.serialize();
  if (model.kind !== 'bytes') throw new Error('int8 probe: expected an in-memory model');
  const session = await ort.InferenceSession.create(model.bytes, { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
  try {
    const { y } = await session.run({ x: new ort.Tensor('float32', new Float32Array(M * K).fill(1), [M, K]) });
    const exact = K * 127;
    // Saturated pairs give 32,767 / 255 per pair: about half the exact sum.
    return Math.abs((y.data as Float32Array)[0] - exact) <= 0.01 * exact ? 127 : 63;
  } finally {
    await session.release();
  }
}
