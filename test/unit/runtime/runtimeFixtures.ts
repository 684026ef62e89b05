/** Shared helpers for the runtime tests: random checkpoints on disk, token batches and tolerant comparisons. */
import * as assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint } from '../../../server/src/checkpoint';
import type { ArchitectureName, LoadedCheckpoint, ModelSpec } from '../../../server/src/checkpoint/modelSpec';
import type { ModelEngine } from '../../../server/src/runtime/modelEngine';
import { Prng } from '../../support/prng';
import { RandomCheckpointOptions, writeRandomCheckpoint } from '../../support/randomCheckpoint';
import { referenceForward, type ReferenceWeights } from '../../support/referenceForward';

export const ARCHITECTURES: ArchitectureName[] = ['MixtralForCausalLM', 'Qwen2MoeForCausalLM', 'Qwen3MoeForCausalLM', 'OlmoeForCausalLM', 'GraniteMoeForCausalLM', 'GptOssForCausalLM', 'PhimoeForCausalLM'];

export async function withCheckpoint<T>(options: RandomCheckpointOptions, use: (checkpoint: LoadedCheckpoint) => Promise<T>): Promise<T> {
  const folder = await mkdtemp(join(tmpdir(), 'moe-runtime-'));
  try {
    await writeRandomCheckpoint(folder, { vocabSize: 300, ...options });
    const checkpoint = await loadCheckpoint(folder);
    try {
      return await use(checkpoint);
    } finally {
      await checkpoint.weights.close();
    }
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

/** Sequences of the given lengths with random ids, deterministic per seed. */
export function randomSequences(lengths: number[], vocab: number, seed = 7): Int32Array[] {
  const prng = new Prng(seed);
  return lengths.map((length) => Int32Array.from({ length }, () => Math.floor(prng.next() * vocab)));
}

/** max |actual - expected| <= rtol * max |expected|: relative to the tensor's scale, so near-zero entries do not dominate. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, rtol = 1e-4): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let maxDiff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  assert.ok(maxDiff <= rtol * Math.max(scale, 1e-12), `${what}: max diff ${maxDiff} vs scale ${scale} (rtol ${rtol})`);
}

/** One batched forward (padded) against the float64 reference per sequence: logits and every MoE capture. */
export async function assertForwardMatchesReference(engine: ModelEngine, spec: ModelSpec, weights: ReferenceWeights, sequences: Int32Array[]): Promise<void> {
  const result = await engine.forward({ sequences, outputs: { logits: 'all', moe: true, moeInputs: true } });
  for (const [s, tokens] of sequences.entries()) {
    const reference = await referenceForward(spec, weights, tokens);
    const actual = result.sequences[s];
    assertClose(actual.logits!, reference.logits, `sequence ${s} logits`);
    assert.equal(actual.moe!.length, reference.moe.length);
    for (const [m, layer] of reference.moe.entries()) {
      const capture = actual.moe![m];
      assert.equal(capture.layer, layer.layer);
      assertClose(capture.routerLogits, layer.routerLogits, `sequence ${s} layer ${layer.layer} router logits`);
      assert.deepEqual([...capture.selectedExperts], [...layer.selectedExperts], `sequence ${s} layer ${layer.layer} selected experts`);
      assertClose(capture.gateWeights, layer.gateWeights, `layer ${layer.layer} gate weights`);
      assertClose(capture.expertOutputNorms, layer.expertOutputNorms, `layer ${layer.layer} expert output norms`);
      assertClose(capture.inputs!, layer.inputs, `layer ${layer.layer} MoE inputs`);
    }
  }
}
