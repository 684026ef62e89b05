import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import { referenceForward, referenceLoss } from '../../support/referenceForward';
import { ARCHITECTURES, assertClose, assertForwardMatchesReference, randomSequences, withCheckpoint } from './runtimeFixtures';

describe('ONNX forward matches the reference', () => {
  for (const architecture of ARCHITECTURES) {
    for (const dtype of ['F32', 'BF16'] as const) {
      it(`${architecture} ${dtype}: logits, router logits and expert captures, padded batch`, async () => {
        await withCheckpoint({ architecture, dtype, seed: 11, numLayers: 3 }, async ({ spec, weights }) => {
          const engine = await ModelEngine.create(spec, weights);
          try {
            // Different lengths in one batch, so shorter sequences are right-padded.
            const sequences = randomSequences([9, 4, 12], spec.vocabSize);
            await assertForwardMatchesReference(engine, spec, weights, sequences);
          } finally {
            await engine.close();
          }
        });
      });
    }
  }

  it('loss, last-token logits and all logits agree with each other and the reference', async () => {
    await withCheckpoint({ architecture: 'MixtralForCausalLM', seed: 5, tieWordEmbeddings: true }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights);
      try {
        const sequences = randomSequences([7, 3, 10], spec.vocabSize, 3);
        const all = await engine.forward({ sequences, outputs: { logits: 'all' } });
        const loss = await engine.forward({ sequences, outputs: { loss: true } });
        const last = await engine.forward({ sequences, outputs: { logits: 'last' } }); // a smaller token budget splits the batch
        const split = await engine.forward({ sequences, outputs: { loss: true, logits: 'last' }, maxBatchTokens: 10 });
        const V = spec.vocabSize;
        for (const [s, tokens] of sequences.entries()) {
          const reference = await referenceForward(spec, weights, tokens);
          assertClose(loss.sequences[s].loss!, referenceLoss(reference.logits, V, tokens), `sequence ${s} loss vs reference`);
          assertClose(loss.sequences[s].loss!, referenceLoss(Float64Array.from(all.sequences[s].logits!), V, tokens), `sequence ${s} loss vs own logits`);
          assert.equal(loss.sequences[s].loss!.length, tokens.length - 1);
          assertClose(last.sequences[s].logits!, all.sequences[s].logits!.subarray((tokens.length - 1) * V), `sequence ${s} last logits`, 1e-5);
          assertClose(split.sequences[s].logits!, last.sequences[s].logits!, `sequence ${s} split batch`, 1e-5);
          assertClose(split.sequences[s].loss!, loss.sequences[s].loss!, `sequence ${s} split batch loss`, 1e-5);
        }
      } finally {
        await engine.close();
      }
    });
  });

  it('runs from external data when the weights are over the threshold', async () => {
    const { mkdtemp, readdir, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const externalDataDir = await mkdtemp(join(tmpdir(), 'moe-external-'));
    try {
      await withCheckpoint({ architecture: 'OlmoeForCausalLM', seed: 2 }, async ({ spec, weights }) => {
        const engine = await ModelEngine.create(spec, weights, { externalDataDir, externalDataThreshold: 0 });
        try {
          // Once the sessions exist the files are no longer needed (onnxruntime prepacked the weights).
          assert.deepEqual(await readdir(externalDataDir), []);
          const [tokens] = randomSequences([6], spec.vocabSize);
          const result = await engine.forward({ sequences: [tokens], outputs: { logits: 'all' } });
          assertClose(result.sequences[0].logits!, (await referenceForward(spec, weights, tokens)).logits, 'external data logits');
        } finally {
          await engine.close();
        }
      });
    } finally {
      await rm(externalDataDir, { recursive: true, force: true });
    }
  });

  it('handles a one-token sequence next to a longer one, and a layer left with a single expert', async () => {
    await withCheckpoint({ architecture: 'Qwen2MoeForCausalLM' }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights);
      try {
        const sequences = [Int32Array.of(7), Int32Array.of(3, 4, 5, 6, 7, 8, 9)];
        const result = await engine.forward({ sequences, outputs: { logits: 'last', loss: true } });
        assert.equal(result.sequences[0].loss!.length, 0);
        assertClose(result.sequences[0].logits!, (await referenceForward(spec, weights, sequences[0])).logits, 'one-token logits');
        // top-3 over one kept expert: the other two slots have probability 0 and must neither run nor count.
        const plan = { layers: { 0: { keptExperts: [true, false, false, false, false, false, false, false], topK: 3 } } };
        const single = await engine.forward({ sequences, outputs: { logits: 'all' }, plan });
        assertClose(single.sequences[1].logits!, (await referenceForward(spec, weights, sequences[1], plan)).logits, 'single-expert logits');
      } finally {
        await engine.close();
      }
    });
  });

  it('rejects token ids outside the vocabulary with a clear error', async () => {
    await withCheckpoint({ architecture: 'MixtralForCausalLM' }, async ({ spec, weights }) => {
      const engine = await ModelEngine.create(spec, weights);
      try {
        await assert.rejects(engine.forward({ sequences: [Int32Array.of(1, spec.vocabSize)], outputs: { logits: 'last' } }), /outside the vocabulary/);
      } finally {
        await engine.close();
      }
    });
  });
});
