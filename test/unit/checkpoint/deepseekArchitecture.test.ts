import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { parseModelConfig } from '../../../server/src/checkpoint/config';
import { describeRouting } from '../../../server/src/checkpoint/describe';
import { CheckpointError } from '../../../server/src/checkpoint/errors';
import { listExpectedTensors } from '../../../server/src/checkpoint/expectedTensors';
import { loadCheckpoint } from '../../../server/src/checkpoint/loadCheckpoint';
import { layerWeightBytes } from '../../../server/src/runtime/memoryBudget';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import { randomCheckpointConfig, writeRandomCheckpoint, type RandomCheckpointOptions } from '../../support/randomCheckpoint';
import { assertForwardMatchesReference, randomSequences } from '../runtime/runtimeFixtures';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-deepseek-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const V3_FP8: RandomCheckpointOptions = { architecture: 'DeepseekV3ForCausalLM', dtype: 'BF16', numLayers: 3, numExperts: 8, topK: 3, deepseek: { fp8: { blockSize: [16, 16], scaleDtype: 'F32' } } };

test('DeepSeek V3: MLA tensor names and shapes, dense first layers, shared experts, the router spec', () => {
  const spec = parseModelConfig(randomCheckpointConfig({ architecture: 'DeepseekV3ForCausalLM', numLayers: 3, numExperts: 8, topK: 3 }));
  assert.equal(spec.architecture, 'DeepseekV3ForCausalLM');
  assert.deepEqual(spec.layers.map((l) => l.kind), ['dense', 'moe', 'moe']);
  assert.deepEqual(spec.attention.mla, { qLoraRank: 48, kvLoraRank: 32, nopeHeadDim: 16, ropeHeadDim: 8, vHeadDim: 12, interleaved: true, latentNormEps: 1e-6 });
  assert.equal(spec.attention.headDim, 8);
  assert.equal(spec.attention.scale, 1 / Math.sqrt(24));
  const moe = spec.layers[1].kind === 'moe' ? spec.layers[1].moe : undefined;
  assert.deepEqual(moe?.routing, { scoring: 'sigmoid', correctionBias: true, groups: { count: 4, selected: 2, score: 'topTwoSum' }, scalingFactor: 2.5 });
  assert.equal(moe?.normTopKProb, true);
  assert.deepEqual(moe?.sharedExpert, { intermediateSize: 32, gated: false });
  const shapes = new Map(listExpectedTensors(spec).map((t) => [t.name, t.shape]));
  assert.deepEqual(shapes.get('model.layers.1.self_attn.q_a_proj.weight'), [48, 64]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.q_a_layernorm.weight'), [48]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.q_b_proj.weight'), [4 * 24, 48]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.kv_a_proj_with_mqa.weight'), [32 + 8, 64]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.kv_a_layernorm.weight'), [32]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.kv_b_proj.weight'), [4 * (16 + 12), 32]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.o_proj.weight'), [64, 4 * 12]);
  assert.deepEqual(shapes.get('model.layers.1.mlp.gate.e_score_correction_bias'), [8]);
  assert.deepEqual(shapes.get('model.layers.1.mlp.shared_experts.gate_proj.weight'), [32, 64]);
  assert.deepEqual(shapes.get('model.layers.0.mlp.gate_proj.weight'), [96, 64]);
  assert.equal(shapes.has('model.layers.0.mlp.gate.weight'), false);
  assert.equal(shapes.has('model.layers.1.self_attn.k_proj.weight'), false);

  const lite = parseModelConfig(randomCheckpointConfig({ architecture: 'DeepseekV2ForCausalLM', numLayers: 2 }));
  assert.equal(lite.tensors.layer(0).mla?.q, 'model.layers.0.self_attn.q_proj.weight');
  const liteMoe = lite.layers[1].kind === 'moe' ? lite.layers[1].moe : undefined;
  assert.deepEqual(liteMoe?.routing, { scoring: 'softmax', correctionBias: false, scalingFactor: 1 });
  assert.equal(liteMoe?.normTopKProb, false);
});

test('DeepSeek V3 with YaRN: the softmax scale takes mscale², cos/sin the attention factor', () => {
  const spec = parseModelConfig(randomCheckpointConfig({ architecture: 'DeepseekV3ForCausalLM', deepseek: { yarn: { factor: 40, originalMaxPositionEmbeddings: 64, mscale: 1, mscaleAllDim: 1 } } }));
  const mscale = 0.1 * Math.log(40) + 1;
  assert.ok(Math.abs(spec.attention.scale! - mscale * mscale / Math.sqrt(24)) < 1e-12);
  const scaling = spec.attention.ropeScaling;
  assert.ok(scaling?.type === 'table');
  assert.equal(scaling.attentionFactor, 1);
  // Hand-computed YaRN frequencies for dim 8, base 10000, original length 64: correction range [0, 2] after floor/ceil.
  const low = Math.max(Math.floor((8 * Math.log(64 / (32 * 2 * Math.PI))) / (2 * Math.log(10000))), 0);
  const high = Math.min(Math.ceil((8 * Math.log(64 / (1 * 2 * Math.PI))) / (2 * Math.log(10000))), 7);
  const expected = [0, 1, 2, 3].map((i) => {
    const base = Math.pow(10000, (2 * i) / 8);
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    return (1 / (40 * base)) * ramp + (1 / base) * (1 - ramp);
  });
  scaling.inverseFrequencies.forEach((f, i) => assert.ok(Math.abs(f - expected[i]) <= 1e-6 * expected[i], `inv_freq ${i}: ${f} vs ${expected[i]}`));
});

const CASES: { name: string; options: RandomCheckpointOptions }[] = [
  { name: 'V3 FP8 (16 x 16 blocks, F32 scales)', options: V3_FP8 },
  { name: 'V3 FP8 (128 x 128 blocks, BF16 scales) with YaRN', options: { ...V3_FP8, seed: 4, deepseek: { fp8: { blockSize: [128, 128], scaleDtype: 'BF16' }, yarn: { factor: 4, originalMaxPositionEmbeddings: 16, mscale: 0.707, mscaleAllDim: 0.707 } } } },
  { name: 'V3 BF16, one group (Kimi-K2 / Moonlight), not interleaved', options: { architecture: 'DeepseekV3ForCausalLM', dtype: 'BF16', seed: 5, numLayers: 2, deepseek: { nGroup: 1, topkGroup: 1, ropeInterleave: false, firstKDenseReplace: 0 } } },
  { name: 'V2-Lite (q_proj, softmax greedy)', options: { architecture: 'DeepseekV2ForCausalLM', seed: 6, numLayers: 3, numExperts: 8, topK: 2 } },
  { name: 'V2 (q LoRA, group_limited_greedy)', options: { architecture: 'DeepseekV2ForCausalLM', seed: 7, numLayers: 2, numExperts: 8, topK: 2, deepseek: { qLoraRank: 40, topkMethod: 'group_limited_greedy', nGroup: 4, topkGroup: 2, routedScalingFactor: 16 } } },
  { name: 'GLM-4.5 (q/k/v biases, partial rotary 0.5, head_dim 24)', options: { architecture: 'Glm4MoeForCausalLM', dtype: 'BF16', seed: 12, numLayers: 3, numExperts: 8, topK: 3 } },
  { name: 'GLM-4.5 with use_qk_norm, 4 groups, rotary 0.25', options: { architecture: 'Glm4MoeForCausalLM', seed: 13, numLayers: 2, numExperts: 8, topK: 2, headDim: 32, deepseek: { useQkNorm: true, nGroup: 4, topkGroup: 2, partialRotaryFactor: 0.25, firstKDenseReplace: 0 } } },
];

describe('DeepSeek and GLM-4.5 forward match the float64 reference', () => {
  for (const { name, options } of CASES) {
    it(`${name}: logits, router logits, selected experts, gate weights, padded batch`, async () => {
      const written = await writeRandomCheckpoint(join(root, name.replace(/\W+/g, '-')), { vocabSize: 300, ...options });
      const model = await loadCheckpoint(written.folder);
      const engine = await ModelEngine.create(model.spec, model.weights);
      try {
        const sequences = randomSequences([9, 4, 12], model.spec.vocabSize);
        // The MoE inputs too: the captures NAEE and the repairs read.
        await assertForwardMatchesReference(engine, model.spec, model.weights, sequences);
      } finally {
        await engine.close();
        await model.weights.close();
      }
    });
  }
});

test('info names DeepSeek routing in one line', () => {
  const v3 = parseModelConfig(randomCheckpointConfig({ architecture: 'DeepseekV3ForCausalLM', numExperts: 8, topK: 3 }));
  assert.equal(describeRouting(v3), 'sigmoid over 8 experts, correction bias for the choice, top-2 of 4 groups (by the sum of their best two), top-3, renormalised, times 2.5, plus an always-on shared expert');
  const v2 = parseModelConfig(randomCheckpointConfig({ architecture: 'DeepseekV2ForCausalLM', numExperts: 8, topK: 2, deepseek: { topkMethod: 'group_limited_greedy', nGroup: 2, topkGroup: 1 } }));
  assert.equal(describeRouting(v2), 'softmax over 8 experts, top-1 of 2 groups (by their best expert), top-2, plus an always-on shared expert');
});

test('FP8 weights read as the block-scaled values the test encoded, scales byte for byte', async () => {
  const written = await writeRandomCheckpoint(join(root, 'fp8-decode'), V3_FP8);
  const model = await loadCheckpoint(written.folder);
  try {
    const name = 'model.layers.1.mlp.experts.3.down_proj.weight';
    assert.equal(model.weights.info(name).dtype, 'F8_E4M3');
    assert.deepEqual(await model.weights.readFloat32(name), written.weights.get(name));
    const q = 'model.layers.2.self_attn.q_b_proj.weight';
    assert.deepEqual(await model.weights.readFloat32(q), written.weights.get(q));
    // The router and the correction bias stay BF16 / F32, as published.
    assert.equal(model.weights.info('model.layers.1.mlp.gate.weight').dtype, 'BF16');
    assert.equal(model.weights.info('model.layers.1.mlp.gate.e_score_correction_bias').dtype, 'F32');
    assert.ok(model.weights.names().includes(name));
    assert.ok(!model.uncomputableTensors.some((t) => t.name === name));
  } finally {
    await model.weights.close();
  }
});

describe('bad FP8 checkpoints fail at load with the tensors named', () => {
  const rewrite = async (folder: string, edit: (header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>) => void) => {
    // Edits the safetensors header in place (same byte length, padded with spaces) to corrupt one entry.
    const path = join(folder, 'model.safetensors');
    const bytes = await readFile(path);
    const length = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8'));
    edit(header);
    const text = Buffer.from(JSON.stringify(header));
    assert.ok(text.length <= length);
    await writeFile(path, Buffer.concat([bytes.subarray(0, 8), text, Buffer.alloc(length - text.length, 0x20), bytes.subarray(8 + length)]));
  };
  const expectLoadError = async (folder: string, code: string, pattern: RegExp) =>
    assert.rejects(loadCheckpoint(folder), (error: unknown) => {
      assert.ok(error instanceof CheckpointError, String(error));
      assert.equal(error.code, code);
      assert.match(error.message, pattern);
      return true;
    });

  it('a weight without its weight_scale_inv', async () => {
    const written = await writeRandomCheckpoint(join(root, 'fp8-missing'), V3_FP8);
    await rewrite(written.folder, (header) => {
      header['model.layers.1.self_attn.o_proj.weight_scale_xxx'] = header['model.layers.1.self_attn.o_proj.weight_scale_inv'];
      delete header['model.layers.1.self_attn.o_proj.weight_scale_inv'];
    });
    await expectLoadError(written.folder, 'missingTensor', /model\.layers\.1\.self_attn\.o_proj\.weight is F8_E4M3 but the checkpoint has no model\.layers\.1\.self_attn\.o_proj\.weight_scale_inv/);
  });

  it('a scale of the wrong shape', async () => {
    const written = await writeRandomCheckpoint(join(root, 'fp8-shape'), V3_FP8);
    await rewrite(written.folder, (header) => {
      const scale = header['model.layers.2.mlp.experts.0.up_proj.weight_scale_inv'];
      scale.shape = [scale.shape[1], scale.shape[0]];
    });
    await expectLoadError(written.folder, 'wrongShape', /model\.layers\.2\.mlp\.experts\.0\.up_proj\.weight_scale_inv has shape \[4, 2\], expected \[2, 4\] for model\.layers\.2\.mlp\.experts\.0\.up_proj\.weight \[32, 64\] in 16 x 16 blocks/);
  });

  it('FP8 tensors in a config without an fp8 quantization_config', async () => {
    const written = await writeRandomCheckpoint(join(root, 'fp8-config'), V3_FP8);
    const config = JSON.parse(await readFile(join(written.folder, 'config.json'), 'utf8'));
    delete config.quantization_config;
    await writeFile(join(written.folder, 'config.json'), JSON.stringify(config));
    await expectLoadError(written.folder, 'unsupportedDtype', /is F8_E4M3; expected F32, F16 or BF16 \(an FP8 checkpoint needs "quantization_config"/);
  });

  it('a quantization_config without weight_block_size', async () => {
    const written = await writeRandomCheckpoint(join(root, 'fp8-block'), V3_FP8);
    const config = JSON.parse(await readFile(join(written.folder, 'config.json'), 'utf8'));
    delete config.quantization_config.weight_block_size;
    await writeFile(join(written.folder, 'config.json'), JSON.stringify(config));
    await expectLoadError(written.folder, 'invalidConfig', /"quantization_config" should give "weight_block_size" as two positive integers/);
  });
});

test('DeepSeek configs that transformers would not compute as declared are refused, the key named', () => {
  for (const [edit, pattern] of [
    [{ n_group: 3 }, /n_routed_experts \(8\) is not a multiple of "n_group" \(3\)/],
    [{ topk_group: 5 }, /"topk_group" \(5\) exceeds "n_group" \(4\)/],
    [{ n_group: 8, topk_group: 1 }, /fewer than 2 experts per group/],
    [{ scoring_func: 'softmax' }, /"scoring_func" is "softmax"; DeepseekV3ForCausalLM scores with "sigmoid"/],
    [{ moe_layer_freq: 2 }, /"moe_layer_freq" is 2; only 1 is supported/],
    [{ first_k_dense_replace: 9 }, /"first_k_dense_replace" should be a layer count from 0 to num_hidden_layers \(2\)/],
    [{ num_key_value_heads: 2 }, /MLA has one key and value per query head/],
  ] as const) {
    const config = { ...randomCheckpointConfig({ architecture: 'DeepseekV3ForCausalLM', numExperts: 8 }), ...edit };
    assert.throws(() => parseModelConfig(config), (error: unknown) => error instanceof CheckpointError && error.code === 'invalidConfig' && pattern.test(error.message), JSON.stringify(edit));
  }
  const v2 = { ...randomCheckpointConfig({ architecture: 'DeepseekV2ForCausalLM' }), topk_method: 'noaux_tc' };
  assert.throws(() => parseModelConfig(v2), /"topk_method" is "noaux_tc"; DeepseekV2ForCausalLM supports "greedy" and "group_limited_greedy"/);
});

test('GLM-4.5: GQA with q/k/v biases and head_dim of its own, partial rotary, V3 routing, shared experts, dense first layer', () => {
  const spec = parseModelConfig(randomCheckpointConfig({ architecture: 'Glm4MoeForCausalLM', numLayers: 3, numExperts: 8, topK: 3 }));
  assert.equal(spec.architecture, 'Glm4MoeForCausalLM');
  assert.deepEqual(spec.layers.map((l) => l.kind), ['dense', 'moe', 'moe']);
  assert.equal(spec.attention.headDim, 24);
  assert.equal(spec.attention.rotaryDim, 12);
  assert.equal(spec.attention.qkvBias, true);
  assert.equal(spec.attention.qkNorm, 'none');
  assert.equal(spec.attention.mla, undefined);
  const moe = spec.layers[1].kind === 'moe' ? spec.layers[1].moe : undefined;
  assert.deepEqual(moe?.routing, { scoring: 'sigmoid', correctionBias: true, groups: { count: 1, selected: 1, score: 'topTwoSum' }, scalingFactor: 2.5 });
  assert.deepEqual(moe?.sharedExpert, { intermediateSize: 32, gated: false });
  const names = spec.tensors.layer(1);
  assert.equal(names.qBias, 'model.layers.1.self_attn.q_proj.bias');
  assert.equal(names.qNorm, undefined);
  assert.equal(names.correctionBias, 'model.layers.1.mlp.gate.e_score_correction_bias');
  const shapes = new Map(listExpectedTensors(spec).map((t) => [t.name, t.shape]));
  assert.deepEqual(shapes.get('model.layers.1.self_attn.q_proj.weight'), [4 * 24, 64]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.k_proj.bias'), [2 * 24]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.o_proj.weight'), [64, 4 * 24]);
  assert.equal(shapes.has('model.layers.1.self_attn.o_proj.bias'), false);
  assert.deepEqual(shapes.get('model.layers.0.mlp.up_proj.weight'), [96, 64]);
  const normed = parseModelConfig(randomCheckpointConfig({ architecture: 'Glm4MoeForCausalLM', deepseek: { useQkNorm: true } }));
  assert.equal(normed.attention.qkNorm, 'perHead');
  assert.equal(normed.tensors.layer(1).kNorm, 'model.layers.1.self_attn.k_norm.weight');
  assert.equal(describeRouting(spec), 'sigmoid over 8 experts, correction bias for the choice, top-3, renormalised, times 2.5, plus an always-on shared expert');
  assert.throws(() => parseModelConfig({ ...randomCheckpointConfig({ architecture: 'Glm4MoeForCausalLM' }), partial_rotary_factor: 0.3 }), /head_dim 24 × partial_rotary_factor 0.3 = 7 rotary dimensions; RoPE needs an even, positive number/);
});

test('the memory estimate counts every tensor of a DeepSeek or GLM layer (MLA shapes, shared experts, correction bias)', () => {
  for (const architecture of ['DeepseekV3ForCausalLM', 'DeepseekV2ForCausalLM', 'Glm4MoeForCausalLM'] as const) {
    const spec = parseModelConfig(randomCheckpointConfig({ architecture, numLayers: 3, deepseek: { useQkNorm: true } }));
    const expected = listExpectedTensors(spec);
    for (const layer of spec.layers) {
      const own = expected.filter((t) => t.name.startsWith(`model.layers.${layer.index}.`));
      const elements = own.reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0);
      assert.equal(layerWeightBytes(spec, layer, 'fp32'), 4 * elements, `${architecture} layer ${layer.index}`);
    }
  }
});
