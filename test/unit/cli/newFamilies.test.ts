/**
 * GPT-OSS (MXFP4) and Phi-MoE through the CLI, as a user runs them: info names the architecture and its routing
 * in one line, profile → plan → evaluate → export, and the export loads back with its experts sliced. A merging
 * plan on the MXFP4 checkpoint exports its merged experts re-encoded as MXFP4.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadCheckpoint } from '../../../server/src/checkpoint';
import type { ArchitectureName } from '../../../server/src/checkpoint/modelSpec';
import { writeRandomCheckpoint, type RandomCheckpointOptions } from '../../support/randomCheckpoint';
import { cli } from '../../support/cliInProcess';

describe('the new families through the CLI', () => {
  let dir: string;
  let data: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cli-families-'));
    data = path.join(dir, 'data.jsonl');
    fs.writeFileSync(data, Array.from({ length: 6 }, (_, i) => JSON.stringify({ text: `sample ${i} ${'sinks and windows '.repeat(3 + i)}` })).join('\n') + '\n');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const cases: { architecture: ArchitectureName; routing: string; dtypes: RegExp; options?: Partial<RandomCheckpointOptions>; expertsKey?: string }[] = [
    { architecture: 'GptOssForCausalLM', routing: 'routing: top-2 of 8 router logits (with bias), softmax over those 2', dtypes: /U8 × 8/ },
    { architecture: 'PhimoeForCausalLM', routing: 'routing: sparsemixer over 8 experts: top-2 one at a time, each weighted by a softmax over the logits within 0.02 (relative) of it', dtypes: /BF16 × \d+/ },
    // DeepSeek V3 as published: FP8 e4m3 projections with block scales, sigmoid router in groups (2 here, so 4 kept experts split evenly).
    {
      architecture: 'DeepseekV3ForCausalLM',
      routing: 'routing: sigmoid over 8 experts, correction bias for the choice, top-1 of 2 groups (by the sum of their best two), top-2, renormalised, times 2.5, plus an always-on shared expert',
      dtypes: /F8_E4M3 × \d+/,
      options: { deepseek: { firstKDenseReplace: 0, nGroup: 2, topkGroup: 1, fp8: { blockSize: [16, 16], scaleDtype: 'F32' } } },
      expertsKey: 'n_routed_experts',
    },
    { architecture: 'Glm4MoeForCausalLM', routing: 'routing: sigmoid over 8 experts, correction bias for the choice, top-2, renormalised, times 2.5, plus an always-on shared expert', dtypes: /BF16 × \d+/, options: { deepseek: { firstKDenseReplace: 0 } }, expertsKey: 'n_routed_experts' },
  ];
  for (const { architecture, routing, dtypes, options, expertsKey } of cases) {
    it(`${architecture}: info, profile, plan, evaluate, export`, async () => {
      const model = path.join(dir, architecture);
      await writeRandomCheckpoint(model, { architecture, dtype: 'BF16', numExperts: 8, seed: 7, ...options });
      const info = await cli('info', '--model', model);
      assert.equal(info.code, 0, info.err);
      assert.match(info.out, new RegExp(`^${architecture} at `, 'm'));
      assert.ok(info.out.split('\n').includes(`  ${routing}`), info.out);
      assert.match(info.out, dtypes);

      const profile = path.join(dir, `${architecture}.profile.json`);
      assert.equal((await cli('profile', '--model', model, '--data', data, '--out', profile, '--threads', '1')).code, 0);
      const saved = JSON.parse(fs.readFileSync(profile, 'utf8'));
      assert.equal(saved.layers.length, 2);

      const planFile = path.join(dir, `${architecture}.moeplan.json`);
      const planned = await cli('plan', '--model', model, '--method', 'reap', '--keep', '4', '--calibration', data, '--threads', '1', '--out', planFile);
      assert.equal(planned.code, 0, planned.err);
      assert.equal((await cli('evaluate', '--plan', planFile, '--data', data, '--threads', '1')).code, 0);
      const out = path.join(dir, `${architecture}-export`);
      const exported = await cli('export', '--plan', planFile, '--out', out);
      assert.equal(exported.code, 0, exported.err);
      const loaded = await loadCheckpoint(out);
      try {
        assert.equal(loaded.spec.architecture, architecture);
        assert.equal(loaded.config[expertsKey ?? 'num_local_experts'], 4);
      } finally {
        await loaded.weights.close();
      }
    });
  }

  it('GPT-OSS MXFP4: a merging plan (UNCURL) is exact and exports its merged experts re-encoded as MXFP4', async () => {
    const model = path.join(dir, 'GptOssForCausalLM');
    const planFile = path.join(dir, 'merge.moeplan.json');
    const planned = await cli('plan', '--model', model, '--method', 'uncurl', '--keep', '4', '--calibration', data, '--threads', '1', '--out', planFile);
    assert.equal(planned.code, 0, planned.err);
    const plan = JSON.parse(fs.readFileSync(planFile, 'utf8'));
    assert.ok(plan.layers.some((layer: { mergeMatrix?: number[][] }) => layer.mergeMatrix), 'UNCURL merged');
    assert.equal(plan.exactInHuggingFace.exact, true);
    const out = path.join(dir, 'merge-export');
    const exported = await cli('export', '--plan', planFile, '--out', out);
    assert.equal(exported.code, 0, exported.err);
    const loaded = await loadCheckpoint(out);
    try {
      assert.deepEqual(loaded.uncomputableTensors.find((t) => t.name === 'model.layers.0.mlp.experts.gate_up_proj_blocks')?.shape, [4, 64, 2, 16]);
    } finally {
      await loaded.weights.close();
    }
  });
});
