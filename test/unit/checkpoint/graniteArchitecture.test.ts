import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseModelConfig } from '../../../server/src/checkpoint/config';
import { describeRouting } from '../../../server/src/checkpoint/describe';
import { CheckpointError } from '../../../server/src/checkpoint/errors';
import { listExpectedTensors } from '../../../server/src/checkpoint/expectedTensors';
import { loadCheckpoint } from '../../../server/src/checkpoint/loadCheckpoint';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import { randomCheckpointConfig, writeRandomCheckpoint } from '../../support/randomCheckpoint';
import { randomSequences } from '../runtime/runtimeFixtures';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-granite-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('Granite MoE: fused expert tensors, router.layer, the four multipliers', () => {
  const spec = parseModelConfig(randomCheckpointConfig({ architecture: 'GraniteMoeForCausalLM', numExperts: 6, expertIntermediateSize: 24 }));
  assert.equal(spec.architecture, 'GraniteMoeForCausalLM');
  assert.equal(spec.attention.scale, 0.015625);
  assert.deepEqual(spec.scaling, { embedding: 12, residual: 0.22, logitsScaling: 6 });
  const layer = spec.layers[0];
  assert.ok(layer.kind === 'moe' && layer.moe.normTopKProb && layer.moe.numExperts === 6);
  const names = spec.tensors.layer(1);
  assert.equal(names.router, 'model.layers.1.block_sparse_moe.router.layer.weight');
  assert.equal(names.expert, undefined);
  assert.deepEqual(names.fusedExperts, { gateUp: 'model.layers.1.block_sparse_moe.input_linear.weight', down: 'model.layers.1.block_sparse_moe.output_linear.weight' });
  const shapes = new Map(listExpectedTensors(spec).map((t) => [t.name, t.shape]));
  assert.deepEqual(shapes.get('model.layers.1.block_sparse_moe.input_linear.weight'), [6, 48, 64]);
  assert.deepEqual(shapes.get('model.layers.1.block_sparse_moe.output_linear.weight'), [6, 64, 24]);
  assert.deepEqual(shapes.get('model.layers.1.block_sparse_moe.router.layer.weight'), [6, 64]);

  const defaults = randomCheckpointConfig({ architecture: 'GraniteMoeForCausalLM' });
  for (const key of ['embedding_multiplier', 'attention_multiplier', 'residual_multiplier', 'logits_scaling']) delete defaults[key];
  const plain = parseModelConfig(defaults);
  assert.equal(plain.attention.scale, 1);
  assert.deepEqual(plain.scaling, { embedding: 1, residual: 1, logitsScaling: 1 });
});

test('Granite MoE: bad multipliers and other position embeddings are refused with the key named', () => {
  for (const [key, value, pattern] of [
    ['residual_multiplier', 0, /"residual_multiplier" should be a positive number, got 0/],
    ['position_embedding_type', 'alibi', /"position_embedding_type" is "alibi"; only "rope" is supported/],
  ] as const) {
    const config = { ...randomCheckpointConfig({ architecture: 'GraniteMoeForCausalLM' }), [key]: value };
    assert.throws(() => parseModelConfig(config), (error: unknown) => error instanceof CheckpointError && error.code === 'invalidConfig' && pattern.test(error.message));
  }
});

test('Granite MoE: a fused expert tensor of the wrong expert count fails at load, named', async () => {
  const written = await writeRandomCheckpoint(join(root, 'wrong'), { architecture: 'GraniteMoeForCausalLM', numExperts: 8 });
  const config = JSON.parse(await readFile(join(written.folder, 'config.json'), 'utf8'));
  config.num_local_experts = 6;
  await writeFile(join(written.folder, 'config.json'), JSON.stringify(config));
  await assert.rejects(loadCheckpoint(written.folder), (error: unknown) => {
    assert.ok(error instanceof CheckpointError);
    assert.equal(error.code, 'wrongShape');
    assert.match(error.message, /model\.layers\.0\.block_sparse_moe\.input_linear\.weight has shape \[8, 64, 64\], expected \[6, 64, 64\]/);
    return true;
  });
});

test('Granite MoE routing as GraniteMoeMoE computes it: top-k of the router logits, softmax over those k', async () => {
  const written = await writeRandomCheckpoint(join(root, 'routing'), { architecture: 'GraniteMoeForCausalLM', seed: 3, numExperts: 8, topK: 3 });
  const model = await loadCheckpoint(written.folder);
  const engine = await ModelEngine.create(model.spec, model.weights);
  try {
    const result = await engine.forward({ sequences: randomSequences([10], model.spec.vocabSize), outputs: { moe: true } });
    for (const capture of result.sequences[0].moe!) {
      const E = 8;
      const k = 3;
      for (let t = 0; t < capture.routerLogits.length / E; t++) {
        const logits = Array.from(capture.routerLogits.subarray(t * E, (t + 1) * E));
        const top = logits.map((value, e) => ({ value, e })).sort((a, b) => b.value - a.value).slice(0, k);
        const max = top[0].value;
        const total = top.reduce((sum, { value }) => sum + Math.exp(value - max), 0);
        top.forEach(({ value, e }, slot) => {
          assert.equal(capture.selectedExperts[t * k + slot], e, `layer ${capture.layer} token ${t} slot ${slot}`);
          assert.ok(Math.abs(capture.gateWeights[t * k + slot] - Math.exp(value - max) / total) < 1e-5, `layer ${capture.layer} token ${t} gate ${slot}`);
        });
      }
    }
  } finally {
    await engine.close();
    await model.weights.close();
  }
});

test('info names the routing rule in one line', () => {
  const granite = parseModelConfig(randomCheckpointConfig({ architecture: 'GraniteMoeForCausalLM', numExperts: 8, topK: 2 }));
  assert.equal(describeRouting(granite), 'top-2 of 8 router logits, softmax over those 2');
  const qwen = parseModelConfig(randomCheckpointConfig({ architecture: 'Qwen2MoeForCausalLM', numExperts: 8, topK: 2 }));
  assert.equal(describeRouting(qwen), 'softmax over 8 experts, top-2, plus a sigmoid-gated shared expert');
});
