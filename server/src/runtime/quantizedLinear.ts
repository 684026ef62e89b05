import type { GraphBuilder, WeightData, WeightReader } from './graphBuilder';
import { resolveWeight } from './layerWeights';
import { int8WeightLevels } from './int8Kernel';
import { quantizeBf16PerOutputChannel, quantizePerOutputChannel, QuantizedWeight } from './quantize';


/**
 * y = x W^T (+ addend) with W as int8 per output channel: one com.microsoft.DynamicQuantizeMatMul, which
 * quantizes x per call (uint8, one scale per tensor), multiplies in int8 with int32 sums and rescales by
 * x's scale times W's channel scales. Chosen by bench/int8Matmul.measure.ts (see README): on the expert and
 * attention shapes of OLMoE and Qwen3 it beat the fp32 Gemm 3.2-4.4x at one thread here, the standard-ONNX
 * spelling (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul) was up to 15% slower, and uint8
 * weights with zero point 128 half as fast.
 *
 * The weight is read and quantized when the graph is serialised, one tensor at a time: the values and the
 * scales are two initializers written one after the other, so the quantized copy is kept only between them.
 * `addend` (a bias row or a residual [rows, out]) is added after the product.
 */
export function quantizedLinearOp(g: GraphBuilder, x: string, name: string, weight: WeightData, outDim: number, inDim: number, addend?: string): string {
  let pending: Promise<QuantizedWeight> | undefined;
  const quantized = () => (pending ??= quantize(weight, outDim, inDim));
  const values = g.typedWeight(`${name}.int8`, 'int8', async () => (await quantized()).values, [inDim, outDim]);
  const scales = g.weight(
    `${name}.scale`,
    async () => {
      const { scales } = await quantized();
      pending = undefined; // both parts written: let the quantized copy go
      return scales;
    },
    [outDim],
  );
  const product = g.op('DynamicQuantizeMatMul', [x, values, scales], {}, 'com.microsoft');
  return addend ? g.op('Add', [product, addend]) : product;
}

/** From the stored bf16 bits when the reader has them (no fp32 copy), else from the fp32 values. */
async function quantize(weight: WeightData, outDim: number, inDim: number): Promise<QuantizedWeight> {
  const levels = await int8WeightLevels();
  const bits = typeof weight === 'function' ? await (weight as WeightReader).bf16Bits?.() : undefined;
  return bits ? quantizeBf16PerOutputChannel(bits, outDim, inDim, levels) : quantizePerOutputChannel(await resolveWeight(weight), outDim, inDim, levels);
}
