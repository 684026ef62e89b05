import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dequantize, quantizePerOutputChannel } from '../../../server/src/runtime/quantize';
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

  it('refuses a weight whose length does not match its shape', () => {
    assert.throws(() => quantizePerOutputChannel(new Float32Array(5), 2, 3), /5 values for a \[2, 3\] weight/);
  });
});
