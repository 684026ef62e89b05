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

  it('prices the layer writer by the largest matrix and writes ahead only when the budget has it beyond the floor', () => {
    // The largest matrices are q and o, 4 x 4: 16 parameters at 12 bytes in fp32 (two bf16 tensors and two fp32 buffers)
    // and 6 in int8, beside the writer thread's 64 MiB.
    const probe = planMemory(tiny, { hiddenStateBytes: 1000, budgetBytes: 1e12 });
    assert.equal(probe.writerBytes, 64 * 2 ** 20 + 12 * 16);
    assert.equal(planMemory(tiny, { hiddenStateBytes: 1000, budgetBytes: 1e12, precision: 'int8' }).writerBytes, 64 * 2 ** 20 + 6 * 16);
    assert.equal(probe.writeAhead, false, 'all resident: nothing streams');
    const floor = probe.streamingFloorBytes;
    const atFloor = planMemory(tiny, { hiddenStateBytes: 1000, budgetBytes: floor, writerBytes: 100 });
    const withWriter = planMemory(tiny, { hiddenStateBytes: 1000, budgetBytes: floor + 100, writerBytes: 100 });
    assert.deepEqual([atFloor.policy, atFloor.writeAhead], ['streamed', false]);
    assert.deepEqual([withWriter.policy, withWriter.writeAhead], ['streamed', true]);
    // The writer is held for the runtime's lifetime, so it is a fixed part.
    assert.equal(withWriter.fixedBytes - atFloor.fixedBytes, 100);
  });

  it('defaults to half the RAM minus 1 GB, at least 2 GB', () => {
    assert.equal(defaultMemoryBudget(16e9), 7e9);
    assert.equal(defaultMemoryBudget(4e9), 2e9);
  });

  it('picks resident, the head then the deepest layers that fit, or one at a time, and refuses below the floor with the numbers', () => {
    const options = { hiddenStateBytes: 1000 };
    const probe = planMemory(tiny, { ...options, budgetBytes: 1e12 });
    const layer = probe.layerBytes[0];
    // Embedding 10 x 4 fp32; the head its own 10 x 4 lm_head and the final norm of 4.
    assert.equal(probe.embeddingBytes, 160);
    assert.equal(probe.headBytes, 176);
    const baseline = probe.fixedBytes - 160 - 176;
    assert.ok(probe.workBytes > 2 * layer, 'a batch of 2048 tokens outweighs a layer of this model');
    // The slot holds a loading layer (2 x 544) or a layer and a batch's work, or the head the same way.
    assert.equal(probe.streamingSlotBytes, layer + probe.workBytes);
    assert.equal(probe.streamingFloorBytes, baseline + layer + probe.workBytes + 1000);
    assert.equal(probe.totalBytes, baseline + 160 + 176 + 3 * layer + Math.max(layer, probe.workBytes) + 1000);
    assert.equal(probe.policy, 'resident');
    assert.deepEqual([probe.embeddingResident, probe.headResident], [true, true]);
    assert.deepEqual(probe.residentLayers, [0, 1, 2]);
    assert.match(probe.summary, /^needs [\d.]+ MB as fp32; budget 1000 GB: all 3 layers resident$/);

    assert.equal(planMemory(tiny, { ...options, budgetBytes: probe.totalBytes }).policy, 'resident');
    // One byte less: the embedding's rows are read per batch, the head (176) and two layers (2 x 544) fit beside the slot.
    const partial = planMemory(tiny, { ...options, budgetBytes: probe.totalBytes - 1 });
    assert.equal(partial.policy, 'partial');
    assert.deepEqual([partial.embeddingResident, partial.headResident], [false, true]);
    assert.deepEqual(partial.residentLayers, [1, 2]);
    assert.equal(partial.fixedBytes, baseline + 176);
    assert.equal(partial.streamedBytesPerPass, layer);
    assert.match(partial.summary, /: 2 of 3 layers resident \(loaded by the first pass\), streaming 1, about 1 s of weight loading per pass$/);
    assert.deepEqual(planMemory(tiny, { ...options, budgetBytes: probe.streamingFloorBytes + 176 + layer }).residentLayers, [2]);

    const headOnly = planMemory(tiny, { ...options, budgetBytes: probe.streamingFloorBytes + layer - 1 });
    assert.equal(headOnly.policy, 'streamed');
    assert.equal(headOnly.headResident, true);
    assert.match(headOnly.summary, /: streaming 3 layers, about 1 s of weight loading per pass$/);

    const streamed = planMemory(tiny, { ...options, budgetBytes: probe.streamingFloorBytes + 175 });
    assert.equal(streamed.policy, 'streamed');
    assert.deepEqual(streamed.residentLayers, []);
    assert.equal(streamed.headResident, false);
    assert.equal(streamed.fixedBytes, baseline);
    assert.match(streamed.summary, /: streaming 3 layers and the head, about 1 s of weight loading per pass$/);

    assert.throws(() => planMemory(tiny, { ...options, budgetBytes: probe.streamingFloorBytes - 1 }), (error: Error) => error instanceof MemoryBudgetError && error.message.includes(`${formatBytes(probe.streamingFloorBytes)} in all`));
  });

  it('Qwen3-30B-A3B layer shapes in fp32 stream within 6 GB: one 2.5 GB layer is the floor, not the 1.2 GB embedding and head beside it', () => {
    const qwen3: ModelShape = {
      architecture: 'Qwen3MoeForCausalLM',
      vocabSize: 151936,
      hiddenSize: 2048,
      rmsNormEps: 1e-6,
      tieWordEmbeddings: false,
      attention: { numHeads: 32, numKvHeads: 4, headDim: 128, qkvBias: false, qkNorm: 'perHead', ropeTheta: 1e6 },
      layers: Array.from({ length: 6 }, (_, index) => ({ index, kind: 'moe' as const, moe: { numExperts: 128, topK: 8, normTopKProb: true, expert: { intermediateSize: 768 } } })),
    };
    // A layer: q 4096x2048, k and v 512x2048, o 2048x4096, 128 experts x 3 x 768x2048, fp32; norms, q/k norms and the router.
    const layer = 4 * (4096 * 2048 * 2 + 512 * 2048 * 2 + 128 * 3 * 768 * 2048) + 4 * (2 * 2048 + 2 * 128 + 128 * 2048);
    const plan = planMemory(qwen3, { budgetBytes: 6e9 });
    assert.equal(plan.layerBytes[0], layer);
    assert.equal(plan.policy, 'streamed');
    assert.equal(plan.headResident, false);
    assert.equal(plan.streamingSlotBytes, 2 * layer);
    assert.ok(plan.streamingFloorBytes <= 6e9, `${plan.streamingFloorBytes}`);
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
