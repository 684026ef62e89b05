import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultMemoryBudget, formatBytes, layerWeightBytes, MemoryBudgetError, planMemory, workSetTokens, type ModelShape } from '../../../server/src/runtime/memoryBudget';

const moeLayer = (index: number) => ({ index, kind: 'moe' as const, moe: { numExperts: 2, topK: 1, normTopKProb: false, expert: { intermediateSize: 3 } } });
/** Hidden 4, 2 query heads and 1 kv head of 2, 2 experts of intermediate 3: small enough to count by hand. */
const tiny: ModelShape = {
  architecture: 'MixtralForCausalLM',
  vocabSize: 10,
  hiddenSize: 4,
  rmsNormEps: 1e-5,
  tieWordEmbeddings: false,
  attention: { numHeads: 2, numKvHeads: 1, headDim: 2, qkvBias: false, qkNorm: 'none', ropeTheta: 1e4 },
  layers: [moeLayer(0), moeLayer(1), moeLayer(2)],
};

describe('memory budget', () => {
  it('prices a layer as the session holds it, fp32 and int8', () => {
    // Matrices: q 4x4, k 2x4, v 2x4, o 4x4, and per expert gate 3x4, up 3x4, down 4x3: 120 parameters in 32 output rows.
    // fp32 besides: two norms of 4 and the router 2x4.
    assert.equal(layerWeightBytes(tiny, tiny.layers[0], 'fp32'), 4 * 120 + 4 * 16);
    assert.equal(layerWeightBytes(tiny, tiny.layers[0], 'int8'), 120 + 4 * 32 + 4 * 16);
  });

  it('defaults to half the RAM minus 1 GB, at least 2 GB', () => {
    assert.equal(defaultMemoryBudget(16e9), 7e9);
    assert.equal(defaultMemoryBudget(4e9), 2e9);
  });

  it('picks resident, the deepest layers that fit, or one at a time, and refuses below the floor with the numbers', () => {
    const options = { hiddenStateBytes: 1000 };
    const probe = planMemory(tiny, { ...options, budgetBytes: 1e12 });
    const layer = probe.layerBytes[0];
    assert.equal(probe.streamingFloorBytes, probe.fixedBytes + layer + Math.max(layer, probe.workBytes) + 1000);
    assert.equal(probe.totalBytes, probe.fixedBytes + 3 * layer + Math.max(layer, probe.workBytes) + 1000);
    assert.equal(probe.policy, 'resident');
    assert.deepEqual(probe.residentLayers, [0, 1, 2]);
    assert.match(probe.summary, /^needs [\d.]+ MB as fp32; budget 1000 GB: all 3 layers resident$/);

    // Two more layers would make it resident (the floor holds one layer already): one less byte keeps one.
    assert.equal(planMemory(tiny, { ...options, budgetBytes: probe.streamingFloorBytes + 2 * layer }).policy, 'resident');
    const partial = planMemory(tiny, { ...options, budgetBytes: probe.streamingFloorBytes + 2 * layer - 1 });
    assert.equal(partial.policy, 'partial');
    assert.deepEqual(partial.residentLayers, [2]);
    assert.equal(partial.streamedBytesPerPass, 2 * layer);
    assert.match(partial.summary, /: 1 of 3 layers resident, streaming 2, about 1 s of weight loading per pass$/);

    const streamed = planMemory(tiny, { ...options, budgetBytes: probe.streamingFloorBytes });
    assert.equal(streamed.policy, 'streamed');
    assert.deepEqual(streamed.residentLayers, []);
    assert.match(streamed.summary, /: streaming 3 layers, about 1 s of weight loading per pass$/);

    assert.throws(() => planMemory(tiny, { ...options, budgetBytes: probe.streamingFloorBytes - 1 }), (error: Error) => error instanceof MemoryBudgetError && error.message.includes(`${formatBytes(probe.streamingFloorBytes)} in all`));
  });

  it('sizes work sets to the RAM left for hidden states and captures when layers stream', () => {
    const resident = planMemory(tiny, { budgetBytes: 1e12 });
    assert.equal(workSetTokens(resident, tiny, { moe: true }), 2048);
    const streamed = planMemory(tiny, { hiddenStateBytes: 64e6, budgetBytes: planMemory(tiny, { hiddenStateBytes: 64e6, budgetBytes: 1e12 }).streamingFloorBytes });
    // Per token: the hidden state (4 floats) and per MoE layer its router logits (2) and k = 1 each of expert, gate, norm.
    const perToken = 4 * 4 + 3 * 4 * (2 + 3);
    assert.equal(workSetTokens(streamed, tiny, { moe: true }, 2), Math.floor(64e6 / 2 / perToken));
  });
});
