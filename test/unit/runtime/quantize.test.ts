import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bf16ToFloat32, float32ToBf16 } from '../../../server/src/checkpoint/dtype';
import { dequantize, quantizeBf16PerOutputChannel, quantizePerOutputChannel } from '../../../server/src/runtime/quantize';
import { Prng } from '../../support/prng';

describe('int8 quantization per output channel', () => {
  it('scales each row by its max |w| / 127, rounds ties to even and writes [in, out]', () => {
    // Row 0: max 127, so scale 1 and the values round directly (2.5 -> 2, -3.5 -> -4, 0.5 -> 0: ties to even).
    // Row 1: max 2.54, scale 0.02: 2.54 -> 127, -1.27 -> -63.5 -> -64 (tie, even), 0.01 -> 0.5 -> 0, 1 -> 50.
    // Row 2: all zero, scale 1, values 0.
    const weight = Float32Array.from([127, 2.5, -3.5, 0.5, 2.54, -1.27, 0.01, 1, 0, 0, 0, 0]);
    const { values, scales } = quantizePerOutputChannel(weight, 3, 4);
    assert.deepEqual([...scales], [1, Math.fround(2.54 / 127), 1]);
    // Transposed: values[i * out + o].
    assert.deepEqual([...values], [127, 127, 0, 2, -64, 0, -4, 0, 0, 0, 50, 0]);
  });

  it('dequantizes within half a step of every weight', () => {
    const prng = new Prng(4);
    const [outDim, inDim] = [16, 40];
    const weight = prng.normalArray(outDim * inDim, 0, 0.02);
    const quantized = quantizePerOutputChannel(weight, outDim, inDim);
    const restored = dequantize(quantized);
    for (let o = 0; o < outDim; o++) {
      const row = weight.subarray(o * inDim, (o + 1) * inDim);
      const max = row.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      assert.ok(Math.abs(quantized.scales[o] - max / 127) <= 1e-7 * max, `row ${o} scale`);
      for (let i = 0; i < inDim; i++) {
        assert.ok(Math.abs(restored[o * inDim + i] - row[i]) <= quantized.scales[o] / 2 + 1e-9, `row ${o} column ${i}`);
      }
      // The largest weight of a row maps to +-127 exactly.
      const extreme = row.findIndex((v) => Math.abs(v) === max);
      assert.equal(Math.abs(quantized.values[extreme * outDim + o]), 127);
    }
  });

  it('matches the per-element definition for every shape, four rows at a time or not', () => {
    const prng = new Prng(9);
    for (const [outDim, inDim] of [[1, 3], [3, 5], [4, 7], [6, 2], [8, 16], [13, 9]]) {
      const weight = prng.normalArray(outDim * inDim, 0, 1);
      weight[0] = 0; // a zero weight, and a row of exact ties: max 127 so scale 1 and x.5 values
      if (outDim > 2) for (let i = 0; i < inDim; i++) weight[2 * inDim + i] = i === 0 ? 127 : i - 0.5 - inDim / 2;
      const { values, scales } = quantizePerOutputChannel(weight, outDim, inDim);
      for (let o = 0; o < outDim; o++) {
        const max = Math.max(...weight.subarray(o * inDim, (o + 1) * inDim).map(Math.abs));
        assert.equal(scales[o], Math.fround(max / 127));
        for (let i = 0; i < inDim; i++) {
          const x = weight[o * inDim + i] / scales[o];
          const nearest = Math.abs(x - Math.trunc(x)) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x);
          assert.equal(values[i * outDim + o], nearest + 0, `[${outDim}, ${inDim}] row ${o} column ${i}: ${x}`);
        }
      }
    }
  });

  it('quantizes bf16 bits exactly as their fp32 widening', () => {
    const prng = new Prng(5);
    for (const [outDim, inDim] of [[5, 3], [8, 12], [64, 48], [7, 1]]) {
      const bits = float32ToBf16(prng.normalArray(outDim * inDim, 0, 0.02));
      bits.fill(0, 0, inDim); // an all-zero row (scale 1)
      bits[inDim] = 0x8000; // -0
      const fromBits = quantizeBf16PerOutputChannel(bits, outDim, inDim);
      const widened = quantizePerOutputChannel(bf16ToFloat32(bits), outDim, inDim);
      assert.deepEqual(fromBits.scales, widened.scales);
      assert.deepEqual(fromBits.values, widened.values);
      assert.equal(fromBits.scales[0], 1);
    }
    assert.throws(() => quantizeBf16PerOutputChannel(new Uint16Array(5), 2, 3), /5 values for a \[2, 3\] weight/);
  });

  it('refuses a weight whose length does not match its shape', () => {
    assert.throws(() => quantizePerOutputChannel(new Float32Array(5), 2, 3), /5 values for a \[2, 3\] weight/);
  });
});
