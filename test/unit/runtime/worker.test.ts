import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { modelIdentity, RuntimePool } from '../../../server/src/profile/run';
import { ModelRuntime } from '../../../server/src/runtime/modelRuntime';
import { referenceForward } from '../../support/referenceForward';
import { assertClose, randomSequences, withCheckpoint } from './runtimeFixtures';

describe('ModelRuntime (worker thread)', () => {
  it('forwards in the worker, matches the reference, cancels, reports errors and keeps the main thread free', async () => {
    await withCheckpoint({ architecture: 'Qwen2MoeForCausalLM', seed: 6, hiddenSize: 128, numLayers: 4, expertIntermediateSize: 128 }, async ({ folder, spec, weights }) => {
      const runtime = await ModelRuntime.open(folder, { threads: 1 });
      try {
        assert.equal(runtime.model.architecture, 'Qwen2MoeForCausalLM');
        assert.equal(runtime.model.layers.length, 4);

        const [tokens] = randomSequences([11], spec.vocabSize);
        const result = await runtime.forward({ sequences: [tokens], outputs: { logits: 'all', moe: true } });
        const reference = await referenceForward(spec, weights, tokens);
        assertClose(result.sequences[0].logits!, reference.logits, 'worker logits');
        assertClose(result.sequences[0].moe![0].routerLogits, reference.moe[0].routerLogits, 'worker router logits');
        assert.ok(result.sequences[0].moe![0].selectedExperts instanceof Int32Array);

        // Many small batches: a long forward, during which the main thread's timers must keep firing.
        const long = { sequences: randomSequences(new Array(96).fill(64), spec.vocabSize), outputs: { loss: true }, maxBatchTokens: 64 };
        let ticks = 0;
        const timer = setInterval(() => ticks++, 5);
        const started = Date.now();
        await runtime.forward(long);
        const elapsed = Date.now() - started;
        clearInterval(timer);
        assert.ok(elapsed > 100, `long forward took ${elapsed} ms, too short to judge responsiveness`);
        // Blocked, the main thread would see no tick at all during the forward; a busy machine delays timers, so
        // the bar is a fifth of the ideal count rather than all of it.
        assert.ok(ticks >= Math.max(3, (elapsed / 5) * 0.2), `only ${ticks} ticks in ${elapsed} ms`);

        const controller = new AbortController();
        // Fresh token ids: the engine's prefix cache would otherwise answer the repeated request from memory.
        const fresh = { ...long, sequences: randomSequences(new Array(96).fill(64), spec.vocabSize, 99) };
        const cancelled = runtime.forward(fresh, { signal: controller.signal });
        setTimeout(() => controller.abort(), 30);
        const cancelStart = Date.now();
        await assert.rejects(cancelled, (error: Error) => error.name === 'AbortError');
        assert.ok(Date.now() - cancelStart < elapsed, 'cancellation stops the forward early');

        await assert.rejects(runtime.forward({ sequences: [Int32Array.of(0, -3)], outputs: { loss: true } }), (error: Error) => error instanceof Error && /outside the vocabulary/.test(error.message));

        // Still usable after a cancellation and an error.
        const again = await runtime.forward({ sequences: [tokens], outputs: { logits: 'all' } });
        assertClose(again.sequences[0].logits!, reference.logits, 'logits after cancel');
      } finally {
        await runtime.close();
      }
    });
  });

  it('open reports a missing model folder as an Error', async () => {
    await assert.rejects(ModelRuntime.open('/nonexistent/model/folder'), (error: Error) => error instanceof Error && /does not exist/.test(error.message));
  });
});

describe('a runtime whose worker dies', () => {
  it('rejects what was pending with the reason, and the pool opens a fresh runtime for the next request', async () => {
    await withCheckpoint({ architecture: 'MixtralForCausalLM', seed: 2 }, async ({ folder, spec }) => {
      const pool = new RuntimePool();
      try {
        const identity = await modelIdentity(folder);
        const first = await pool.get(identity, 1);
        const sequences = randomSequences(new Array(64).fill(32), spec.vocabSize);
        const pending = first.runtime.forward({ sequences, outputs: { loss: true }, maxBatchTokens: 32 });
        // What an out-of-memory end of the worker looks like from here: the thread is gone mid-forward.
        await (first.runtime as unknown as { worker: Worker }).worker.terminate();
        await assert.rejects(pending, /The model runtime stopped \(exit code 1\)\. The next request starts a fresh one/);
        assert.ok(first.runtime.failed);
        const second = await pool.get(identity, 1);
        assert.notEqual(second.runtime, first.runtime);
        assert.equal((await second.runtime.forward({ sequences: sequences.slice(0, 2), outputs: { loss: true } })).sequences.length, 2);
        assert.equal(pool.opened, 2);
      } finally {
        await pool.close();
      }
    });
  });
});
