import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseModelConfig } from '../../../server/src/checkpoint/config';
import { CheckpointError } from '../../../server/src/checkpoint/errors';
import { listExpectedTensors } from '../../../server/src/checkpoint/expectedTensors';
import { randomCheckpointConfig } from '../../support/randomCheckpoint';

function assertConfigError(config: unknown, code: string, pattern: RegExp): void {
  assert.throws(
    () => parseModelConfig(config, '/models/x/config.json'),
    (error: unknown) => {
      assert.ok(error instanceof CheckpointError, String(error));
      assert.equal(error.code, code);
      assert.match(error.message, /\/models\/x\/config\.json/);
      assert.match(error.message, pattern);
      return true;
    },
  );
}

test('Mixtral: w1/w3/w2 are gate/up/down, top-k always renormalised, no biases', () => {
  const spec = parseModelConfig(randomCheckpointConfig({ architecture: 'MixtralForCausalLM', numExperts: 4, normTopKProb: false }));
  assert.equal(spec.architecture, 'MixtralForCausalLM');
  const layer = spec.layers[1];
  assert.equal(layer.kind, 'moe');
  if (layer.kind !== 'moe') return;
  assert.deepEqual(layer.moe, { numExperts: 4, topK: 2, normTopKProb: true, expert: { intermediateSize: 32 } });
  const names = spec.tensors.layer(1);
  assert.equal(names.router, 'model.layers.1.block_sparse_moe.gate.weight');
  assert.deepEqual(names.expert?.(3), {
    gate: 'model.layers.1.block_sparse_moe.experts.3.w1.weight',
    up: 'model.layers.1.block_sparse_moe.experts.3.w3.weight',
    down: 'model.layers.1.block_sparse_moe.experts.3.w2.weight',
  });
  assert.equal(names.qBias, undefined);
  assert.equal(names.qNorm, undefined);
  assert.equal(spec.attention.ropeTheta, 1e6);
  assert.equal(spec.tensors.lmHead, 'lm_head.weight');
});

test('Qwen2-MoE: layer kinds follow decoder_sparse_step and mlp_only_layers; shared expert and qkv bias', () => {
  const config = randomCheckpointConfig({ architecture: 'Qwen2MoeForCausalLM', numLayers: 6, decoderSparseStep: 2, mlpOnlyLayers: [3] });
  const spec = parseModelConfig(config);
  // (i + 1) % 2 == 0 makes 1, 3, 5 sparse; mlp_only_layers then turns 3 dense.
  assert.deepEqual(spec.layers.map((layer) => layer.kind), ['dense', 'moe', 'dense', 'dense', 'dense', 'moe']);
  const dense = spec.layers[0];
  assert.ok(dense.kind === 'dense' && dense.mlp.intermediateSize === 96);
  const moe = spec.layers[1];
  assert.ok(moe.kind === 'moe');
  assert.deepEqual(moe.moe.sharedExpert, { intermediateSize: 48, gated: true });
  assert.equal(moe.moe.normTopKProb, false);
  assert.equal(spec.attention.qkvBias, true);
  assert.equal(spec.rmsNormEps, 1e-6);

  const moeNames = spec.tensors.layer(1);
  assert.equal(moeNames.qBias, 'model.layers.1.self_attn.q_proj.bias');
  assert.equal(moeNames.router, 'model.layers.1.mlp.gate.weight');
  assert.equal(moeNames.expert?.(0).down, 'model.layers.1.mlp.experts.0.down_proj.weight');
  assert.equal(moeNames.sharedExpert?.up, 'model.layers.1.mlp.shared_expert.up_proj.weight');
  assert.equal(moeNames.sharedExpertGate, 'model.layers.1.mlp.shared_expert_gate.weight');
  assert.equal(moeNames.mlp, undefined);
  const denseNames = spec.tensors.layer(0);
  assert.equal(denseNames.router, undefined);
  assert.deepEqual(denseNames.mlp, {
    gate: 'model.layers.0.mlp.gate_proj.weight',
    up: 'model.layers.0.mlp.up_proj.weight',
    down: 'model.layers.0.mlp.down_proj.weight',
  });
  const shapes = new Map(listExpectedTensors(spec).map((t) => [t.name, t.shape]));
  assert.deepEqual(shapes.get('model.layers.1.mlp.shared_expert_gate.weight'), [1, 64]);
  assert.deepEqual(shapes.get('model.layers.0.mlp.down_proj.weight'), [64, 96]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.k_proj.bias'), [32]);
});

test('Qwen3-MoE: explicit head_dim, per-head q/k norm, no shared expert, no bias', () => {
  const config = randomCheckpointConfig({ architecture: 'Qwen3MoeForCausalLM', headDim: 32, normTopKProb: true });
  const spec = parseModelConfig(config);
  assert.deepEqual(spec.attention, { numHeads: 4, numKvHeads: 2, headDim: 32, qkvBias: false, qkNorm: 'perHead', ropeTheta: 10000 });
  const layer = spec.layers[0];
  assert.ok(layer.kind === 'moe' && layer.moe.sharedExpert === undefined && layer.moe.normTopKProb);
  const shapes = new Map(listExpectedTensors(spec).map((t) => [t.name, t.shape]));
  assert.deepEqual(shapes.get('model.layers.0.self_attn.q_norm.weight'), [32]);
  assert.deepEqual(shapes.get('model.layers.0.self_attn.q_proj.weight'), [128, 64]);
  assert.deepEqual(shapes.get('model.layers.0.self_attn.o_proj.weight'), [64, 128]);
  assert.equal(shapes.has('model.layers.0.mlp.shared_expert_gate.weight'), false);
});

test('OLMoE: q/k norm over the whole projection, norm_topk_prob defaults to false', () => {
  const config = randomCheckpointConfig({ architecture: 'OlmoeForCausalLM' });
  delete config.norm_topk_prob;
  const spec = parseModelConfig(config);
  assert.equal(spec.attention.qkNorm, 'full');
  const layer = spec.layers[0];
  assert.ok(layer.kind === 'moe' && layer.moe.normTopKProb === false);
  const shapes = new Map(listExpectedTensors(spec).map((t) => [t.name, t.shape]));
  assert.deepEqual(shapes.get('model.layers.0.self_attn.q_norm.weight'), [64]);
  assert.deepEqual(shapes.get('model.layers.0.self_attn.k_norm.weight'), [32]);
  assert.deepEqual(shapes.get('model.layers.0.mlp.gate.weight'), [8, 64]);
  assert.deepEqual(shapes.get('model.layers.0.mlp.experts.7.gate_proj.weight'), [32, 64]);
});

test('tied embeddings drop lm_head; defaults fill absent optional keys', () => {
  const config = randomCheckpointConfig({ architecture: 'MixtralForCausalLM', tieWordEmbeddings: true, numHeads: 16 });
  delete config.rope_theta;
  delete config.rms_norm_eps;
  delete config.num_key_value_heads;
  const spec = parseModelConfig(config);
  assert.equal(spec.tensors.lmHead, undefined);
  assert.equal(listExpectedTensors(spec).some((t) => t.name === 'lm_head.weight'), false);
  assert.equal(spec.attention.ropeTheta, 1e6);
  assert.equal(spec.rmsNormEps, 1e-5);
  // transformers' MixtralConfig default, not num_attention_heads.
  assert.equal(spec.attention.numKvHeads, 8);
});

test('transformers 5 rope_parameters are read', () => {
  const config = randomCheckpointConfig({ architecture: 'Qwen3MoeForCausalLM' });
  delete config.rope_theta;
  config.rope_parameters = { rope_type: 'default', rope_theta: 1000000 };
  assert.equal(parseModelConfig(config).attention.ropeTheta, 1000000);
});

test('model_type is used when architectures is absent', () => {
  const config = randomCheckpointConfig({ architecture: 'OlmoeForCausalLM' });
  delete config.architectures;
  assert.equal(parseModelConfig(config).architecture, 'OlmoeForCausalLM');
});

test('an unknown architecture lists the supported four', () => {
  const config = { ...randomCheckpointConfig({ architecture: 'MixtralForCausalLM' }), architectures: ['LlamaForCausalLM'] };
  assertConfigError(
    config,
    'unsupportedArchitecture',
    /LlamaForCausalLM is not supported\. MoE Studio supports MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM/,
  );
  assertConfigError({ model_type: 'llama' }, 'unsupportedArchitecture', /"llama".*supports MixtralForCausalLM/);
});

test('missing and invalid keys are named', () => {
  const missing = randomCheckpointConfig({ architecture: 'Qwen2MoeForCausalLM' });
  delete missing.moe_intermediate_size;
  assertConfigError(missing, 'invalidConfig', /"moe_intermediate_size" is missing/);
  const invalid = { ...randomCheckpointConfig({ architecture: 'MixtralForCausalLM' }), hidden_size: 64.5 };
  assertConfigError(invalid, 'invalidConfig', /"hidden_size" should be a positive integer, got 64\.5/);
  const tooManyK = { ...randomCheckpointConfig({ architecture: 'OlmoeForCausalLM' }), num_experts_per_tok: 9 };
  assertConfigError(tooManyK, 'invalidConfig', /num_experts_per_tok \(9\) exceeds num_experts \(8\)/);
  const badLayer = { ...randomCheckpointConfig({ architecture: 'Qwen2MoeForCausalLM' }), mlp_only_layers: [5] };
  assertConfigError(badLayer, 'invalidConfig', /"mlp_only_layers" names layer 5, but there are only 2 layers/);
  const scaled = { ...randomCheckpointConfig({ architecture: 'MixtralForCausalLM' }), rope_scaling: { type: 'yarn', factor: 4 } };
  assertConfigError(scaled, 'invalidConfig', /"yarn" RoPE scaling, which is not supported/);
  assertConfigError([], 'invalidConfig', /is not a JSON object/);
});

test("per-layer expert counts from MoE Studio's export extension, checked layer by layer", () => {
  const config = randomCheckpointConfig({ architecture: 'Qwen2MoeForCausalLM', numLayers: 6, decoderSparseStep: 2, mlpOnlyLayers: [3], numExperts: 8 });
  const withCounts = (counts: unknown) => ({ ...config, moe_studio: { version: 1, num_experts_per_layer: counts } });
  // Layers 1 and 5 are sparse (see the Qwen2-MoE test above); the others must be null.
  const spec = parseModelConfig(withCounts([null, 4, null, null, null, 6]));
  assert.deepEqual(spec.layers.map((layer) => (layer.kind === 'moe' ? layer.moe.numExperts : null)), [null, 4, null, null, null, 6]);
  const expected = listExpectedTensors(spec).map((t) => t.name);
  assert.ok(expected.includes('model.layers.1.mlp.experts.3.down_proj.weight') && !expected.includes('model.layers.1.mlp.experts.4.down_proj.weight'));
  assert.ok(expected.includes('model.layers.5.mlp.experts.5.down_proj.weight') && !expected.includes('model.layers.5.mlp.experts.6.down_proj.weight'));
  // Absent or null: the one count holds everywhere, as in every published checkpoint.
  assert.ok(parseModelConfig(withCounts(null)).layers.every((layer) => layer.kind === 'dense' || layer.moe.numExperts === 8));

  assertConfigError(withCounts([null, 4, null, null, null]), 'invalidConfig', /num_experts_per_layer" should list one entry per layer \(6\)/);
  assertConfigError(withCounts([null, 4, 2, null, null, 6]), 'invalidConfig', /num_experts_per_layer"\[2\] should be null: layer 2 is dense/);
  assertConfigError(withCounts([null, 9, null, null, null, 6]), 'invalidConfig', /num_experts_per_layer"\[1\] should be an expert count from num_experts_per_tok \(\d+\) to num_experts \(8\), got 9/);
  assertConfigError(withCounts([null, 4, null, null, null, 'six']), 'invalidConfig', /\[5\] should be an expert count/);
});
