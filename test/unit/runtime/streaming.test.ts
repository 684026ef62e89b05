import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { loadCheckpoint } from '../../../server/src/checkpoint';
import type { ModelSpec, WeightSource } from '../../../server/src/checkpoint/modelSpec';
import type { ForwardProgress, ForwardResult } from '../../../server/src/runtime/forwardTypes';
import { HiddenStore } from '../../../server/src/runtime/hiddenStore';
import { MemoryBudgetError, planMemory } from '../../../server/src/runtime/memoryBudget';
import { EngineOptions, ModelEngine } from '../../../server/src/runtime/modelEngine';
import type { RuntimePlan } from '../../../server/src/runtime/runtimePlan';
import { randomSequences, withCheckpoint } from './runtimeFixtures';

const root = path.resolve(__dirname, '../../..');
/** Small enough that the work set's hidden states spill to the temporary file. */
const SPILL_BYTES = 16 * 1024;

/** Budgets that make planMemory pick each policy for this model (hidden-state RAM pinned to SPILL_BYTES). */
function budgets(spec: ModelSpec): { streamed: EngineOptions; partial: EngineOptions } {
  const { tensors: _names, ...shape } = spec;
  const probe = planMemory(shape, { budgetBytes: 1e15, hiddenStateBytes: SPILL_BYTES });
  const floor = probe.streamingFloorBytes;
  const lastLayer = probe.layerBytes[probe.layerBytes.length - 1];
  return {
    streamed: { memoryBudget: floor, hiddenStateBytes: SPILL_BYTES },
    // The head is pinned before any layer: floor + head + the last layer keeps exactly that layer.
    partial: { memoryBudget: floor + probe.headBytes + lastLayer, hiddenStateBytes: SPILL_BYTES },
  };
}

/** Every array of every result, bit for bit. */
function assertIdentical(actual: ForwardResult, expected: ForwardResult, what: string): void {
  assert.equal(actual.sequences.length, expected.sequences.length);
  for (const [s, sequence] of expected.sequences.entries()) {
    const got = actual.sequences[s];
    for (const field of ['logits', 'loss'] as const) assert.deepEqual(got[field] && [...got[field]!], sequence[field] && [...sequence[field]!], `${what}: sequence ${s} ${field}`);
    assert.equal(got.moe?.length, sequence.moe?.length, `${what}: sequence ${s} captured layers`);
    for (const [m, capture] of (sequence.moe ?? []).entries()) {
      const other = got.moe![m];
      assert.equal(other.layer, capture.layer);
      for (const field of ['routerLogits', 'selectedExperts', 'gateWeights', 'expertOutputNorms', 'inputs'] as const) {
        assert.deepEqual(other[field] && [...other[field]!], capture[field] && [...capture[field]!], `${what}: sequence ${s} layer ${capture.layer} ${field}`);
      }
    }
  }
}

async function compareResidency(spec: ModelSpec, weights: WeightSource, sequences: Int32Array[], plans: RuntimePlan[]): Promise<void> {
  const resident = await ModelEngine.create(spec, weights);
  const { streamed, partial } = budgets(spec);
  const engines = { streamed: await ModelEngine.create(spec, weights, streamed), partial: await ModelEngine.create(spec, weights, partial) };
  try {
    assert.equal(resident.memory.policy, 'resident');
    assert.equal(engines.streamed.memory.policy, 'streamed');
    assert.equal(engines.partial.memory.policy, 'partial');
    assert.deepEqual(engines.partial.memory.residentLayers, [spec.layers.length - 1]);
    const requests = [
      { sequences, outputs: { logits: 'all' as const, loss: true, moe: true, moeInputs: true }, maxBatchTokens: 24 },
      ...plans.map((plan) => ({ sequences, outputs: { loss: true, logits: 'last' as const }, plan, maxBatchTokens: 24 })),
      ...plans.map((plan) => ({ sequences, outputs: { moe: true }, plan, maxBatchTokens: 24 })),
    ];
    for (const [r, request] of requests.entries()) {
      const expected = await resident.forward(request);
      for (const [policy, engine] of Object.entries(engines)) assertIdentical(await engine.forward(request), expected, `request ${r}, ${policy}`);
      // The captured pass (no prefix cache) loaded every layer that is not resident once, for all its batches (maxBatchTokens 24 makes several),
      // and at the floor the head once too (it streams there; the partial budget pins it).
      if (r === 0) assert.deepEqual([engines.streamed.loading.loads, engines.partial.loading.loads], [spec.layers.length + 1, spec.layers.length - 1]);
      if (r === 0) assert.deepEqual([engines.streamed.memory.headResident, engines.partial.memory.headResident], [false, true]);
    }
  } finally {
    await resident.close();
    for (const engine of Object.values(engines)) await engine.close();
  }
}

describe('layer-major execution under a memory budget', () => {
  it('streamed and partially resident results are bit-identical to resident ones: random Qwen2-MoE (dense layer, shared expert), bf16', async () => {
    await withCheckpoint({ architecture: 'Qwen2MoeForCausalLM', dtype: 'BF16', seed: 4, numLayers: 4, numExperts: 8, topK: 2 }, async ({ spec, weights }) => {
      const merge = [
        [0.5, 0.5, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 0.5, 0.5, 0, 0, 0],
        [0, 0, 0, 0, 0, 1, 1, 0],
      ];
      const plans: RuntimePlan[] = [
        { layers: { 2: { keptExperts: [true, false, true, true, false, true, true, true], topK: 1 } } },
        { layers: { 0: { routerMap: merge, mergeMatrix: merge }, 3: { adaptiveThreshold: 0.1 } } },
      ];
      await compareResidency(spec, weights, randomSequences([9, 14, 5, 11, 7, 12], spec.vocabSize, 3), plans);
    });
  });

  it('streamed and partially resident results are bit-identical to resident ones: the demo model', { timeout: 120_000 }, async () => {
    const checkpoint = await loadCheckpoint(path.join(root, 'demo/model'));
    try {
      const texts = ['The weather today is', 'def fibonacci(n):\n    return', 'Once upon a time, a fox', '1 + 1 = 2, 2 + 2 ='];
      const sequences = texts.map((text) => Int32Array.from(checkpoint.tokenizer.encode(text)));
      await compareResidency(checkpoint.spec, checkpoint.weights, sequences, [{ layers: { 3: { keptExperts: [true, true, false, true, true, false, true, true] } } }]);
    } finally {
      await checkpoint.weights.close();
    }
  });

  it('several plans in one pass give what separate forwards give, sharing layers before their first change', async () => {
    await withCheckpoint({ architecture: 'MixtralForCausalLM', seed: 8, numLayers: 3, numExperts: 8 }, async ({ spec, weights }) => {
      const plans: (RuntimePlan | undefined)[] = [
        undefined,
        { layers: { 2: { topK: 1 } } },
        { layers: { 1: { keptExperts: [true, true, true, false, true, true, true, true] } } },
        { layers: { 2: { topK: 1 } } },
      ];
      const sequences = randomSequences([6, 10, 8], spec.vocabSize, 5);
      for (const options of [{}, budgets(spec).streamed]) {
        const engine = await ModelEngine.create(spec, weights, options);
        try {
          for (const outputs of [{ loss: true, logits: 'all' as const }, { moe: true, moeInputs: true }]) {
            const together = await engine.forwardVariants({ sequences, outputs, plans });
            for (const [v, plan] of plans.entries()) assertIdentical(together[v], await engine.forward({ sequences, outputs, plan }), `variant ${v}, ${engine.memory.policy}`);
          }
          if (engine.memory.policy === 'streamed') {
            const before = engine.loading.loads;
            await engine.forwardVariants({ sequences, outputs: { moe: true }, plans });
            assert.equal(engine.loading.loads - before, spec.layers.length, 'one load per layer for all four variants, and no head for captures alone');
          }
        } finally {
          await engine.close();
        }
      }
    });
  });

  it('layers written ahead on the layer writer\'s thread give bit-identical results, in fp32 and int8, and leave no files', { timeout: 120_000 }, async () => {
    await withCheckpoint({ architecture: 'Qwen2MoeForCausalLM', dtype: 'BF16', seed: 6, numLayers: 4, numExperts: 8, topK: 2 }, async ({ spec, weights, folder }) => {
      const { tensors: _names, ...shape } = spec;
      const sequences = randomSequences([9, 14, 5, 11], spec.vocabSize, 4);
      const plan: RuntimePlan = { layers: { 1: { keptExperts: [true, false, true, true, false, true, true, true] } } };
      const before = new Set(fs.readdirSync(os.tmpdir()));
      for (const precision of ['fp32', 'int8'] as const) {
        const floor = planMemory(shape, { budgetBytes: 1e15, hiddenStateBytes: SPILL_BYTES, precision }).streamingFloorBytes;
        // The writer's real price (its thread's heap) is larger than this whole model; priced below one layer here.
        const writerBytes = 1e5;
        const resident = await ModelEngine.create(spec, weights, { precision });
        // Both of the writer's outputs: protobuf bytes (small layers) and external data files (threshold 1 KiB).
        const engines = [0, 1].map((files) =>
          ModelEngine.create(spec, weights, { precision, memoryBudget: floor + writerBytes, hiddenStateBytes: SPILL_BYTES, writerBytes, checkpointFolder: folder, ...(files ? { externalDataThreshold: 1024 } : {}) }),
        );
        try {
          for (const engine of await Promise.all(engines)) {
            assert.equal(engine.memory.policy, 'streamed');
            assert.ok(engine.memory.writeAhead, 'the budget holds the writer beside the floor');
            for (const request of [
              { sequences, outputs: { loss: true, logits: 'all' as const, moe: true, moeInputs: true }, maxBatchTokens: 24 },
              { sequences, outputs: { loss: true }, plan, maxBatchTokens: 24 },
            ]) {
              assertIdentical(await engine.forward(request), await resident.forward(request), `${precision}, written ahead`);
            }
            // Two passes of 4 layers: every layer after the first pass's first came from the writer.
            assert.equal(engine.writtenAhead.layers, 2 * spec.layers.length - 1, `${precision}: layers loaded from the writer's files`);
            // A few runs a load: int8 layers were not prepacked (prepacksFor), and still gave the resident bits.
            assert.equal(engine.loading.unpacked, precision === 'int8' ? 2 * spec.layers.length : 0, `${precision}: loads not prepacked`);
          }
        } finally {
          await resident.close();
          for (const engine of engines) await (await engine).close();
        }
        assert.equal(planMemory(shape, { budgetBytes: floor, hiddenStateBytes: SPILL_BYTES, writerBytes, precision }).writeAhead, false, 'at the floor layers are written in turn');
        // With the head and the last layer pinned too: the first pass writes the pinned layer ahead like the others.
        const probe = planMemory(shape, { budgetBytes: 1e15, hiddenStateBytes: SPILL_BYTES, precision });
        const reference = await ModelEngine.create(spec, weights, { precision });
        const partial = await ModelEngine.create(spec, weights, { precision, memoryBudget: floor + writerBytes + probe.headBytes + probe.layerBytes[spec.layers.length - 1], hiddenStateBytes: SPILL_BYTES, writerBytes, checkpointFolder: folder });
        try {
          assert.deepEqual([partial.memory.policy, partial.memory.writeAhead, partial.memory.residentLayers], ['partial', true, [spec.layers.length - 1]]);
          const request = { sequences, outputs: { loss: true, moe: true }, maxBatchTokens: 24 };
          for (let pass = 0; pass < 2; pass++) assertIdentical(await partial.forward(request), await reference.forward(request), `${precision}, pinned on first use, pass ${pass}`);
          // Pass 1: layers 1-3 (3 pinned) from the writer; pass 2: the streamed layers 0-2 (int8's unpacked pinned
          // layer has run too few times to be reloaded prepacked, so it is not written again).
          assert.equal(partial.writtenAhead.layers, 2 * spec.layers.length - 2, `${precision}: the pinned layer came from the writer`);
          assert.equal(partial.loading.pinned, 2, 'the pinned layer and the head, once');
        } finally {
          await partial.close();
          await reference.close();
        }
      }
      const left = fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith('moe-runtime-ahead-') && !before.has(name));
      assert.deepEqual(left, [], 'written-ahead folders are removed');
    });
  });

  it('a layer writer that cannot write (here: no checkpoint at its folder) leaves layers to be written in turn, with the same results', async () => {
    await withCheckpoint({ architecture: 'MixtralForCausalLM', seed: 5, numLayers: 3, numExperts: 4 }, async ({ spec, weights }) => {
      const { tensors: _names, ...shape } = spec;
      const floor = planMemory(shape, { budgetBytes: 1e15, hiddenStateBytes: SPILL_BYTES }).streamingFloorBytes;
      const missing = path.join(os.tmpdir(), `moe-no-checkpoint-${process.pid}`);
      const engine = await ModelEngine.create(spec, weights, { memoryBudget: floor + 1e5, hiddenStateBytes: SPILL_BYTES, writerBytes: 1e5, checkpointFolder: missing });
      const resident = await ModelEngine.create(spec, weights);
      try {
        assert.ok(engine.memory.writeAhead);
        const request = { sequences: randomSequences([8, 5, 12], spec.vocabSize, 6), outputs: { loss: true, moe: true }, maxBatchTokens: 16 };
        for (let pass = 0; pass < 2; pass++) assertIdentical(await engine.forward(request), await resident.forward(request), `pass ${pass}`);
        assert.equal(engine.writtenAhead.layers, 0);
        assert.equal(engine.loading.loads, 2 * (spec.layers.length + 1), 'every layer and the head loaded in turn, twice');
      } finally {
        await engine.close();
        await resident.close();
      }
    });
  });

  it('pinned layers and a pinned head are loaded by the first pass that needs them, not at open: a profile never loads the head', async () => {
    await withCheckpoint({ architecture: 'OlmoeForCausalLM', seed: 3, numLayers: 3 }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights, budgets(spec).partial);
      try {
        assert.equal(engine.memory.headResident, true);
        const sequences = randomSequences([6, 9], spec.vocabSize, 2);
        // The ledger also holds the prefix cache's few kilobytes, so the pinned units show as steps of their size.
        const { headBytes, residentLayers, layerBytes } = engine.memory;
        const pinnedBytes = residentLayers.reduce((sum, l) => sum + layerBytes[l], 0);
        assert.equal(engine.loading.pinned, 0, 'nothing is loaded at open');
        const opened = engine.memoryAccount.currentBytes;
        await engine.forward({ sequences, outputs: { moe: true } });
        const profiled = engine.memoryAccount.currentBytes;
        assert.equal(engine.loading.pinned, residentLayers.length, 'the first pass loads the pinned layers');
        const grew = profiled - opened - pinnedBytes;
        assert.ok(grew >= 0 && grew < headBytes / 4, `captures alone: the pinned layer stays, the head is not loaded (${grew} bytes beyond the pinned layer, head ${headBytes})`);
        await engine.forward({ sequences, outputs: { loss: true } });
        const step = engine.memoryAccount.currentBytes - profiled;
        assert.ok(step >= headBytes && step < 1.25 * headBytes, `a loss loads the head, which then stays (${step} bytes more, head ${headBytes})`);
        assert.equal(engine.loading.pinned, residentLayers.length + 1);
        const loads = engine.loading.loads;
        // New sequences: the prefix cache holds the last ones' final hidden states.
        await engine.forward({ sequences: randomSequences([7, 5], spec.vocabSize, 9), outputs: { loss: true } });
        assert.equal(engine.loading.loads - loads, spec.layers.length - 1, 'the next pass streams the layers only');
        assert.equal(engine.loading.pinned, residentLayers.length + 1, 'pinned units load once');
      } finally {
        await engine.close();
      }
    });
  });

  it('int8 pinned layers: loaded unpacked by a pass, reloaded prepacked once passes have run them 24 times, the same bits; the warm-up says what is left', async () => {
    await withCheckpoint({ architecture: 'OlmoeForCausalLM', seed: 4, numLayers: 4 }, async ({ spec, weights }) => {
      const { tensors: _names, ...shape } = spec;
      const precision = 'int8';
      const probe = planMemory(shape, { budgetBytes: 1e15, hiddenStateBytes: SPILL_BYTES, precision });
      const [, , third, last] = probe.layerBytes;
      const engine = await ModelEngine.create(spec, weights, { precision, memoryBudget: probe.streamingFloorBytes + probe.headBytes + third + last, hiddenStateBytes: SPILL_BYTES });
      const resident = await ModelEngine.create(spec, weights, { precision });
      try {
        assert.deepEqual(engine.memory.residentLayers, [2, 3]);
        const sample = randomSequences([6, 7], spec.vocabSize, 5);
        // One pass of one run a layer: both pinned layers load with it, unpacked, and are never reloaded.
        assert.deepEqual((await engine.measureLayer(0, sample, undefined, 1, 1)).pinned, { loadBytes: third + last, prepacked: false, reloadBytes: 0 });
        // 30 passes: they will be reloaded prepacked, so the warm-up loads layer 2 so (timed, kept); layer 3 is left.
        const timing = await engine.measureLayer(0, sample, undefined, 1, 30);
        assert.ok(timing.pinned?.prepackedPerByte !== undefined && timing.pinned.prepackedPerByte > 0);
        assert.deepEqual({ ...timing.pinned, prepackedPerByte: 0 }, { loadBytes: last, prepacked: false, reloadBytes: last, prepackedPerByte: 0 });
        assert.equal(engine.loading.pinned, 2, 'the head (the warm-up times it) and layer 2');
        // 12 one-sequence batches: 12 runs a pass.
        const twelve = (seed: number) => ({ sequences: randomSequences(Array.from({ length: 12 }, (_, i) => 5 + (i % 3)), spec.vocabSize, seed), outputs: { loss: true, moe: true }, maxBatchTokens: 8 });
        const unpacked = engine.loading.unpacked;
        for (const [what, request, pinned] of [
          ['12 runs: layer 3 loads, unpacked', twelve(1), 3],
          ['2 more runs: still unpacked', { ...twelve(2), sequences: randomSequences([6, 5], spec.vocabSize, 2) }, 3],
          ['12 more (26): reloaded prepacked', twelve(3), 4],
          ['prepacked pinned layers stay', twelve(4), 4],
        ] as const) {
          assertIdentical(await engine.forward(request), await resident.forward(request), what);
          assert.equal(engine.loading.pinned, pinned, what);
        }
        assert.equal(engine.loading.unpacked - unpacked, 1 + 4 * 2, 'layer 3 once, and the streamed layers 0 and 1 in each pass');
        assert.equal((await engine.measureLayer(0, sample, undefined, 1, 30)).pinned, undefined, 'nothing pinned left to load');
      } finally {
        await engine.close();
        await resident.close();
      }
    });
  });

  it('reports layer-by-layer progress while streaming', async () => {
    await withCheckpoint({ architecture: 'OlmoeForCausalLM', seed: 2, numLayers: 3 }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights, budgets(spec).streamed);
      try {
        const progress: ForwardProgress[] = [];
        await engine.forwardVariants({ sequences: randomSequences([5, 7], spec.vocabSize), outputs: { loss: true }, plans: [undefined] }, { onProgress: (p) => progress.push(p) });
        assert.deepEqual(progress.map((p) => `${p.layersDone}/${p.layers} ${p.workSetsDone}/${p.workSets}`), ['1/3 0/1', '2/3 0/1', '3/3 0/1']);
        assert.ok(progress.every((p) => p.loadingSeconds > 0 && p.loadingSeconds <= p.seconds));
        assert.equal(progress[2].secondsLeft, 0);
      } finally {
        await engine.close();
      }
    });
  });

  it('a budget below one layer and the work fails at once, naming the numbers', async () => {
    await withCheckpoint({ architecture: 'MixtralForCausalLM', seed: 1 }, async ({ spec, weights }) => {
      const { streamed } = budgets(spec);
      await assert.rejects(ModelEngine.create(spec, weights, { ...streamed, memoryBudget: streamed.memoryBudget! - 1 }), (error: Error) => {
        assert.ok(error instanceof MemoryBudgetError);
        assert.match(error.message, /cannot run within a memory budget of [\d.]+ (MB|GB) as fp32: (one layer takes up to|the head takes) \d+ MB \(\d+ MB while it loads or runs a batch of \d+ MB\), the process \d+ MB/);
        assert.match(error.message, /Raise moeStudio\.memoryBudget \(--memory-budget\) to at least/);
        return true;
      });
    });
  });
});

describe('hidden-state store', () => {
  it('keeps what fits in RAM, spills the rest to a file it reuses, and deletes the file on close', () => {
    const store = new HiddenStore(64);
    const arrays = Array.from({ length: 6 }, (_, i) => Float32Array.from({ length: 10 + i }, (_, j) => i * 100 + j + 0.25));
    arrays.forEach((array, i) => store.put(i, array));
    assert.equal(store.spilledBytes, arrays.slice(1).reduce((sum, a) => sum + a.byteLength, 0), 'only the first (40 bytes) fits in 64');
    const file = store.spillFile!;
    assert.ok(fs.statSync(file).size >= store.spilledBytes);
    for (const i of [3, 5]) assert.deepEqual([...store.take(i)], [...arrays[i]]);
    // Written again at the same sizes (as the next layer does): the freed extents take them, the file does not grow.
    const size = fs.statSync(file).size;
    store.put(10, arrays[3].map((x) => -x));
    store.put(11, arrays[5].map((x) => -x));
    assert.equal(fs.statSync(file).size, size);
    assert.deepEqual([...store.take(11)], [...arrays[5].map((x) => -x)]);
    assert.deepEqual([...store.take(10)], [...arrays[3].map((x) => -x)]);
    for (const i of [0, 1, 2, 4]) assert.deepEqual([...store.take(i)], [...arrays[i]]);
    assert.throws(() => store.take(1), /no hidden state 1/);
    store.close();
    assert.equal(fs.existsSync(path.dirname(file)), false);
    assert.equal(store.spillFile, undefined);
  });
});
