import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { modelCard, modelName } from '../../../server/src/export/modelCard';
import type { ExportPlan, ResolvedExportPlan } from '../../../server/src/export/exportPlan';

const resolved = {
  topK: 2,
  uniformExperts: true,
  layers: [{ index: 0, planned: true, merged: false, numExperts: 4, keptExperts: [0, 2, 5, 7], moe: { numExperts: 8, topK: 2 } }],
} as unknown as ResolvedExportPlan;

const evaluation = (before: number, after: number) => ({
  dataset: 'data/arithmetic-mc.jsonl',
  metrics: [
    { name: 'accuracy', metric: 'accuracy', dataset: 'data/arithmetic-mc.jsonl', before, after },
    { name: 'top1Agreement', metric: 'top1Agreement', dataset: 'data/arithmetic-mc.jsonl', before: 1, after: 0.97 },
  ],
});

const card = (plan: Partial<ExportPlan>, config: Record<string, unknown> = { architectures: ['MixtralForCausalLM'], num_experts_per_tok: 2 }, folder = '/work/demo/model') =>
  modelCard({ sourceFolder: folder, sourceConfig: config, plan: { layers: {}, huggingFace: { exact: true }, ...plan }, resolved, bytesBefore: 20 * 2 ** 20, bytesAfter: 11.5 * 2 ** 20 });

describe('model card', () => {
  it('names the model by config _name_or_path, else by its folder with the parent of a generic one', () => {
    assert.equal(modelName('/x/model', { _name_or_path: 'mistralai/Mixtral-8x7B-v0.1' }), 'mistralai/Mixtral-8x7B-v0.1');
    assert.equal(modelName('/work/demo/model', {}), 'demo/model');
    assert.equal(modelName('/work/tiny-mixtral', {}), 'tiny-mixtral');
    assert.match(card({}), /^# demo\/model, compressed with MoE Studio$/m);
  });

  it('prints sizes in the unit that fits', () => {
    assert.match(card({}), /Weights: 11\.5 MiB, down from 20\.0 MiB\./);
  });

  it('names metrics for people and highlights a large quality drop', () => {
    const dropped = card({ evaluation: evaluation(0.89, 0.31) });
    assert.match(dropped, /\*\*Warning: quality dropped sharply\.\*\* accuracy: 0\.89 → 0\.31\./);
    assert.match(dropped, /\| \*\*accuracy\*\* \| \*\*0\.89\*\* \| \*\*0\.31\*\* \|/);
    assert.match(dropped, /\| top-1 agreement with the full model \| 1 \| 0\.97 \|/);
    assert.doesNotMatch(dropped, /top1Agreement/);
    const kept = card({ evaluation: evaluation(0.89, 0.86) });
    assert.doesNotMatch(kept, /Warning/);
    assert.match(kept, /\| accuracy \| 0\.89 \| 0\.86 \|/);
  });
});
