import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseModelConfig } from '../../../server/src/checkpoint/config';
import { analyseHfExactness } from '../../../server/src/plan/hfExactness';
import { frequencyPruning, keepHighest } from '../../../server/src/plan/methods/ranking';
import { generatePlan } from '../../../server/src/plan/generatePlan';
import { randomCheckpointConfig } from '../../support/randomCheckpoint';

test('with a group limit, ranking keeps the best of every group in equal numbers', () => {
  // Groups {0..3} {4..7}: the four best overall are 0, 1, 2, 5; balanced two per group: 0, 1 and 5, 6.
  const scores = [9, 8, 7, 1, 2, 6, 5, 0];
  assert.deepEqual(keepHighest(1, scores, 4).keptExperts, [0, 1, 2, 5]);
  assert.deepEqual(keepHighest(1, scores, 4, 2).keptExperts, [0, 1, 5, 6]);
  // 3 kept of 2 groups cannot be equal: the plain ranking, whose plan then says why.
  assert.deepEqual(keepHighest(1, scores, 3, 2).keptExperts, [0, 1, 2]);
});

test('a DeepSeek V3 frequency plan keeps equal groups and is exact; without the groups it would not be', async () => {
  const spec = parseModelConfig(randomCheckpointConfig({ architecture: 'DeepseekV3ForCausalLM', numLayers: 2, numExperts: 16, topK: 2, deepseek: { nGroup: 4, topkGroup: 2 } }));
  const tokenCount = [50, 40, 30, 20, 1, 2, 3, 4, 60, 0, 0, 0, 5, 6, 70, 80];
  const statistics = [{ layer: 1, tokenCount, softCount: tokenCount }];
  const plan = await generatePlan({ name: 'frequency' }, { statistics }, { spec, model: { folder: '/m' }, calibration: { datasets: [] }, dtype: 'BF16', targetExperts: 8 });
  assert.deepEqual(plan.layers[0].keptExperts, [0, 1, 6, 7, 8, 9, 14, 15]);
  assert.equal(plan.exactInHuggingFace.exact, true);
  const unbalanced = frequencyPruning(statistics, 8);
  assert.deepEqual(unbalanced[0].keptExperts, [0, 1, 2, 3, 8, 13, 14, 15]);
  assert.equal(analyseHfExactness(unbalanced, spec).exact, false);
});
