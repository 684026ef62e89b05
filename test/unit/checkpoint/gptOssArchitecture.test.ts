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
import { writeSafetensors } from '../../../server/src/checkpoint/safetensorsWriter';
import { SafetensorsFile } from '../../../server/src/checkpoint/safetensors';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import { decodeMxfp4, referenceRope } from '../../support/referenceFamilies';
import { referenceForward } from '../../support/referenceForward';
import { randomCheckpointConfig, writeRandomCheckpoint } from '../../support/randomCheckpoint';
import { scaledRopeFrequencies } from '../../../server/src/runtime/ropeScaling';
import { assertClose, randomSequences, withCheckpoint } from '../runtime/runtimeFixtures';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-gptoss-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const GPT_OSS = 'GptOssForCausalLM' as const;

test('GPT-OSS config: sinks, sliding layers, YaRN, biases, clamped SwiGLU, MXFP4 tensor names and shapes', () => {
  const spec = parseModelConfig(randomCheckpointConfig({ architecture: GPT_OSS, numExperts: 6, expertIntermediateSize: 32, numLayers: 3, topK: 2 }));
  assert.equal(spec.architecture, GPT_OSS);
  assert.deepEqual(spec.attention.slidingWindow, { size: 4, layers: [0, 2] });
  assert.equal(spec.attention.sinks, true);
  assert.equal(spec.attention.oBias, true);
  assert.equal(spec.attention.qkvBias, true);
  assert.equal(spec.attention.ropeScaling?.type, 'yarn');
  // get_mscale(32) = 0.1 ln 32 + 1
  assert.ok(spec.attention.ropeScaling?.type === 'yarn' && Math.abs(spec.attention.ropeScaling.attentionFactor - (0.1 * Math.log(32) + 1)) < 1e-12);
  const layer = spec.layers[0];
  assert.ok(layer.kind === 'moe' && layer.moe.normTopKProb && layer.moe.routerBias && layer.moe.expertBias);
  assert.deepEqual(layer.kind === 'moe' && layer.moe.clampedSwiglu, { alpha: 1.702, limit: 7 });
  const names = spec.tensors.layer(1);
  assert.equal(names.router, 'model.layers.1.mlp.router.weight');
  assert.equal(names.routerBias, 'model.layers.1.mlp.router.bias');
  assert.equal(names.sinks, 'model.layers.1.self_attn.sinks');
  assert.equal(names.oBias, 'model.layers.1.self_attn.o_proj.bias');
  const expected = new Map(listExpectedTensors(spec).map((t) => [t.name, t]));
  // gpt-oss-20b: gate_up_proj_blocks [32, 5760, 90, 16], _scales [32, 5760, 90], down_proj_blocks [32, 2880, 90, 16].
  assert.deepEqual(expected.get('model.layers.1.mlp.experts.gate_up_proj_blocks'), { name: 'model.layers.1.mlp.experts.gate_up_proj_blocks', shape: [6, 64, 2, 16], dtype: 'U8' });
  assert.deepEqual(expected.get('model.layers.1.mlp.experts.gate_up_proj_scales')?.shape, [6, 64, 2]);
  assert.deepEqual(expected.get('model.layers.1.mlp.experts.down_proj_blocks')?.shape, [6, 64, 1, 16]);
  assert.deepEqual(expected.get('model.layers.1.mlp.experts.down_proj_scales')?.shape, [6, 64, 1]);
  assert.deepEqual(expected.get('model.layers.1.mlp.experts.gate_up_proj_bias')?.shape, [6, 64]);
  assert.deepEqual(expected.get('model.layers.1.mlp.experts.down_proj_bias')?.shape, [6, 64]);
  assert.deepEqual(expected.get('model.layers.1.self_attn.sinks')?.shape, [4]);
  assert.deepEqual(expected.get('model.layers.1.mlp.router.bias')?.shape, [6]);
  assert.equal(expected.has('model.layers.1.mlp.experts.gate_up_proj'), false);

  const dense = parseModelConfig(randomCheckpointConfig({ architecture: GPT_OSS, numExperts: 6, expertIntermediateSize: 32, mxfp4: false }));
  const denseShapes = new Map(listExpectedTensors(dense).map((t) => [t.name, t.shape]));
  assert.deepEqual(denseShapes.get('model.layers.0.mlp.experts.gate_up_proj'), [6, 64, 64]);
  assert.deepEqual(denseShapes.get('model.layers.0.mlp.experts.down_proj'), [6, 32, 64]);
  assert.equal(describeRouting(spec), 'top-2 of 6 router logits (with bias), softmax over those 2');
});

test('GPT-OSS config: other quantization, sizes MXFP4 cannot block, bad layer_types are refused, named', () => {
  for (const [change, pattern] of [
    [{ quantization_config: { quant_method: 'fp8' } }, /quant_method "fp8"; only "mxfp4"/],
    [{ hidden_size: 48, num_attention_heads: 4, head_dim: 12 }, /"hidden_size" \(48\) is not a multiple of 32/],
    [{ layer_types: ['sliding_attention'] }, /"layer_types" should list/],
    [{ rope_scaling: { rope_type: 'linear', factor: 2 } }, /"linear" RoPE scaling; GPT-OSS uses "yarn"/],
  ] as const) {
    const config = { ...randomCheckpointConfig({ architecture: GPT_OSS }), ...change };
    assert.throws(() => parseModelConfig(config), (error: unknown) => error instanceof CheckpointError && error.code === 'invalidConfig' && pattern.test(error.message), JSON.stringify(change));
  }
});

test('MXFP4 decoding: E2M1 low nibble first, E8M0 scale with bias 127 (hand-computed)', () => {
  // Byte 0x71: low nibble 1 (0.5), high nibble 7 (6.0); 0xF8: 8 (-0), 15 (-6); scale 128 -> ×2, scale 125 -> ×1/4.
  const blocks = new Uint8Array(32);
  blocks[0] = 0x71;
  blocks[1] = 0xf8;
  blocks[16] = 0x2a; // 10 (-1.0), 2 (1.0)
  const decoded = decodeMxfp4(blocks, Uint8Array.of(128, 125));
  assert.deepEqual([...decoded.subarray(0, 4)], [1, 12, -0, -12]);
  assert.deepEqual([...decoded.subarray(32, 34)], [-0.25, 0.25]);
});

test('YaRN frequencies as _compute_yarn_parameters (gpt-oss-20b: head_dim 64, theta 150000, factor 32, truncate false)', () => {
  const scaling = parseModelConfig({ ...randomCheckpointConfig({ architecture: GPT_OSS, hiddenSize: 64, numHeads: 1, numKvHeads: 1, headDim: 64 }) }).attention.ropeScaling!;
  const runtime = scaledRopeFrequencies(64, 150000, 16, scaling);
  const reference = referenceRope(64, 150000, 16, scaling);
  assertClose(runtime.invFreq, reference.invFreq, 'inverse frequencies', 1e-6);
  assert.ok(Math.abs(runtime.factor - 1.3465735902799727) < 1e-12);
  // The fastest dimensions keep their frequency, the slowest are interpolated by 1/32.
  assert.ok(Math.abs(runtime.invFreq[0] - 1) < 1e-7);
  assert.ok(Math.abs(runtime.invFreq[31] / (1 / 150000 ** (62 / 64)) - 1 / 32) < 1e-5);
});

describe('GPT-OSS forward matches the float64 reference', () => {
  for (const mxfp4 of [true, false]) {
    it(mxfp4 ? 'MXFP4 experts' : 'bf16 experts (gate_up_proj [E, H, 2I])', async () => {
      // A small swiglu_limit so both clamps act on random weights; sequences longer than the window of 4.
      await withCheckpoint({ architecture: GPT_OSS, seed: 11, mxfp4, dtype: mxfp4 ? 'F32' : 'BF16', swigluLimit: 0.05, numExperts: 8, topK: 2 }, async ({ spec, weights }) => {
        const engine = await ModelEngine.create(spec, weights);
        try {
          const sequences = randomSequences([9, 6], spec.vocabSize, 3);
          const result = await engine.forward({ sequences, outputs: { logits: 'all', moe: true } });
          for (const [s, tokens] of sequences.entries()) {
            const reference = await referenceForward(spec, weights, tokens);
            assertClose(result.sequences[s].logits!, reference.logits, `sequence ${s} logits`);
            for (const [m, layer] of reference.moe.entries()) {
              const capture = result.sequences[s].moe![m];
              assert.deepEqual([...capture.selectedExperts], [...layer.selectedExperts], `sequence ${s} layer ${m} experts`);
              assertClose(capture.gateWeights, layer.gateWeights, `sequence ${s} layer ${m} gates`);
              assertClose(capture.expertOutputNorms, layer.expertOutputNorms, `sequence ${s} layer ${m} expert outputs`);
            }
          }
        } finally {
          await engine.close();
        }
      });
    });
  }

  it('each feature moves the logits (a reference that ignored one would not match)', async () => {
    await withCheckpoint({ architecture: GPT_OSS, seed: 12, swigluLimit: 0.05 }, async ({ spec, weights }) => {
      const tokens = randomSequences([9], spec.vocabSize, 4)[0];
      const full = await referenceForward(spec, weights, tokens);
      const variants = {
        'no sinks': { ...spec, tensors: { ...spec.tensors, layer: (i: number) => ({ ...spec.tensors.layer(i), sinks: undefined }) } },
        'no sliding window': { ...spec, attention: { ...spec.attention, slidingWindow: undefined } },
        'no YaRN': { ...spec, attention: { ...spec.attention, ropeScaling: undefined } },
        'no clamp': { ...spec, layers: spec.layers.map((l) => (l.kind === 'moe' ? { ...l, moe: { ...l.moe, clampedSwiglu: { alpha: 1.702, limit: 1e9 } } } : l)) },
      };
      for (const [name, variant] of Object.entries(variants)) {
        const other = await referenceForward(variant, weights, tokens);
        assert.ok(other.logits.some((v, i) => Math.abs(v - full.logits[i]) > 1e-3), name);
      }
    });
  });
});

test('GPT-OSS routing as GptOssTopKRouter: top-k of the biased logits, softmax over those k', async () => {
  await withCheckpoint({ architecture: GPT_OSS, seed: 5, numExperts: 8, topK: 3 }, async ({ spec, weights }) => {
    const engine = await ModelEngine.create(spec, weights);
    try {
      const result = await engine.forward({ sequences: randomSequences([10], spec.vocabSize), outputs: { moe: true } });
      for (const capture of result.sequences[0].moe!) {
        const [E, k] = [8, 3];
        for (let t = 0; t < capture.routerLogits.length / E; t++) {
          const logits = Array.from(capture.routerLogits.subarray(t * E, (t + 1) * E));
          const top = logits.map((value, e) => ({ value, e })).sort((a, b) => b.value - a.value).slice(0, k);
          const total = top.reduce((sum, { value }) => sum + Math.exp(value - top[0].value), 0);
          top.forEach(({ value, e }, slot) => {
            assert.equal(capture.selectedExperts[t * k + slot], e);
            assert.ok(Math.abs(capture.gateWeights[t * k + slot] - Math.exp(value - top[0].value) / total) < 1e-5);
          });
        }
      }
    } finally {
      await engine.close();
    }
  });
});

describe('GPT-OSS bad MXFP4 checkpoints fail at load with the tensor named', () => {
  /** Rewrites model.safetensors with `change` applied to its tensor list. */
  async function broken(name: string, change: (tensors: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[]) => typeof tensors extends never ? never : { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[]): Promise<string> {
    const written = await writeRandomCheckpoint(join(root, name), { architecture: GPT_OSS, numLayers: 1, tokenizer: false, vocabSize: 64 });
    const path = join(written.folder, 'model.safetensors');
    const file = await SafetensorsFile.open(path);
    const tensors = [];
    for (const entry of file.entries.values()) tensors.push({ name: entry.name, dtype: entry.dtype as string, shape: [...entry.shape], bytes: await file.readRaw(entry.name) });
    await file.close();
    const changed = change(tensors);
    await writeSafetensors(path, changed.map(({ name, dtype, shape }) => ({ name, dtype: dtype as 'U8', shape })), (t) => changed.find((c) => c.name === t.name)!.bytes);
    return written.folder;
  }
  const cases: [string, (t: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[]) => { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[], string, RegExp][] = [
    ['scales missing', (t) => t.filter((x) => !x.name.endsWith('gate_up_proj_scales')), 'missingTensor', /missing tensor model\.layers\.0\.mlp\.experts\.gate_up_proj_scales \(config\.json says quantization_config\.quant_method "mxfp4"/],
    ['scales of the wrong shape', (t) => t.map((x) => (x.name.endsWith('down_proj_scales') ? { ...x, shape: [8, 32, 2], bytes: x.bytes.slice(0, 8 * 32 * 2) } : x)), 'wrongShape', /down_proj_scales has shape \[8, 32, 2\], expected \[8, 64, 1\]/],
    ['a block count that does not match the weight', (t) => t.map((x) => (x.name.endsWith('gate_up_proj_blocks') ? { ...x, shape: [8, 64, 1, 16], bytes: x.bytes.slice(0, 8 * 64 * 16) } : x)), 'wrongShape', /gate_up_proj_blocks has shape \[8, 64, 1, 16\], expected \[8, 64, 2, 16\]/],
    ['blocks stored as floats', (t) => t.map((x) => (x.name.endsWith('down_proj_blocks') ? { ...x, dtype: 'F32', shape: [8, 64, 1, 4] } : x)), 'unsupportedDtype', /down_proj_blocks is F32; expected U8 \(MXFP4 E2M1 blocks\)/],
  ];
  for (const [name, change, code, pattern] of cases) {
    it(name, async () => {
      const folder = await broken(name.replace(/ /g, '-'), change);
      await assert.rejects(loadCheckpoint(folder), (error: unknown) => {
        assert.ok(error instanceof CheckpointError, String(error));
        assert.equal(error.code, code);
        assert.match(error.message, pattern);
        return true;
      });
    });
  }

  it('a bf16 checkpoint whose config claims MXFP4 says which encoding is missing', async () => {
    const written = await writeRandomCheckpoint(join(root, 'claims-mxfp4'), { architecture: GPT_OSS, numLayers: 1, mxfp4: false, tokenizer: false, vocabSize: 64 });
    const config = JSON.parse(await readFile(join(written.folder, 'config.json'), 'utf8'));
    config.quantization_config = { quant_method: 'mxfp4' };
    await writeFile(join(written.folder, 'config.json'), JSON.stringify(config));
    await assert.rejects(loadCheckpoint(written.folder), /missing tensor model\.layers\.0\.mlp\.experts\.gate_up_proj_blocks/);
  });
});

test('info counts MXFP4 blocks as two weights a byte and lists their U8 tensors', async () => {
  const { describeCheckpoint } = await import('../../../server/src/checkpoint/describe');
  const written = await writeRandomCheckpoint(join(root, 'info'), { architecture: GPT_OSS, numExperts: 8, topK: 4 });
  const model = await loadCheckpoint(written.folder);
  try {
    const summary = describeCheckpoint(model);
    assert.equal(summary.routing, 'top-4 of 8 router logits (with bias), softmax over those 4');
    assert.equal(summary.dtypes.U8, 8);
    // 2 layers × 8 experts × 3 matrices of 64 × 32: all in the blocks, two a byte.
    assert.equal(summary.expertParameters, 2 * 8 * 3 * 64 * 32);
    const blockBytes = model.uncomputableTensors.filter((t) => t.name.endsWith('_blocks')).reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0);
    assert.equal(blockBytes * 2, summary.expertParameters);
    assert.ok(summary.parameters > summary.expertParameters);
  } finally {
    await model.weights.close();
  }
});

test('MXFP4 encoding (merged experts): smallest power-of-two scale with max/scale <= 6, nearest E2M1, ties to even; decoded MXFP4 encodes back exactly', async () => {
  const { encodeMxfp4Rows, mxfp4RoundTrip } = await import('../../../server/src/checkpoint/mxfp4');
  // max 2.4: 2.4 / 0.5 = 4.8 <= 6 while 2.4 / 0.25 = 9.6 > 6, so the scale is 2^-1 (byte 126).
  const values = new Float32Array(32);
  values.set([2.4, -1.1, 0.375, 0.125, 0.625, 1.75]);
  const { blocks, scales } = encodeMxfp4Rows(values, 1, 1);
  assert.equal(scales[0], 126);
  // In units of 0.5: 4.8 -> 4 (code 6), -2.2 -> -2 (code 12), 0.75 tie -> 1 (code 2), 0.25 tie -> 0, 1.25 tie -> 1, 3.5 tie -> 4.
  assert.deepEqual([...decodeMxfp4(blocks, scales).subarray(0, 6)], [2, -1, 0.5, 0, 0.5, 2]);
  // A decoded MXFP4 block is its own encoding, whatever its largest code.
  const prngBlocks = Uint8Array.from({ length: 64 * 16 }, (_, i) => (i * 97 + 13) & 255);
  const prngScales = Uint8Array.from({ length: 64 }, (_, i) => 115 + (i % 9));
  const decoded = Float32Array.from(decodeMxfp4(prngBlocks, prngScales));
  assert.deepEqual([...mxfp4RoundTrip(decoded, 64, 32)], [...decoded]);
});
