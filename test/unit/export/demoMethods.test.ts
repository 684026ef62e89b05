// The round trip the export promises, on the demo model with a plan from every method: the exported
// checkpoint, loaded by our own loader and run by our own runtime with no plan at all, scores exactly
// what the plan's evaluation measured on the source model with the plan applied.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PlanMethodName } from '../../../common/protocol';
import { loadCheckpoint } from '../../../server/src/checkpoint';
import { evaluatePlanFile, Evaluator, loadSamples } from '../../../server/src/evaluate';
import { exportPlanFile } from '../../../server/src/export/exportPlanFile';
import { generatePlanFile } from '../../../server/src/plan/run';
import { RuntimePool } from '../../../server/src/profile/run/runtimePool';
import { ModelRuntime } from '../../../server/src/runtime/modelRuntime';

const root = path.resolve(__dirname, '../../..');
const model = path.join(root, 'demo/model');
const calibration = path.join(root, 'demo/data/code.train.jsonl');
const heldOut = path.join(root, 'demo/data/code.valid.jsonl');
const ROWS = 24;
const METHODS: PlanMethodName[] = ['random', 'frequency', 'softCount', 'reap', 'naee', 'uncurl', 'eep'];

describe('demo model: export round trip for every method', () => {
  const runtimes = new RuntimePool();
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-demo-export-'));
  });
  after(async () => {
    await runtimes.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const method of METHODS) {
    it(`${method}: the exported model's loss equals the plan's evaluation within 1e-5`, { timeout: 240_000 }, async () => {
      const planPath = path.join(dir, `${method}.moeplan.json`);
      await generatePlanFile({
        model,
        method,
        targetExperts: 4,
        seed: 1,
        calibration: [{ file: calibration, field: { kind: 'field', field: 'text' } }],
        maxRows: ROWS,
        output: planPath,
        runtimes,
        threads: 1,
        // A small search keeps the test quick; the bench and tools/quality run EEP at full size.
        parameters: method === 'eep' ? { budget: 12, populationSize: 4, generations: 3, samples: 4 } : undefined,
      });
      const { evaluations } = await evaluatePlanFile({ plan: planPath, datasets: [{ file: heldOut }], maxRows: ROWS, runtimes, threads: 1 });
      const planLoss = evaluations.find((evaluation) => evaluation.metric === 'loss')!;
      assert.ok(planLoss.baseline !== undefined && planLoss.value !== planLoss.baseline, `${method}: the plan changes the model`);

      const target = path.join(dir, `${method}-model`);
      await exportPlanFile(planPath, { format: 'huggingface', target });
      const exported = await loadCheckpoint(target);
      const runtime = await ModelRuntime.open(target, { threads: 1 });
      try {
        const layer = exported.spec.layers[0];
        assert.ok(layer.kind === 'moe' && layer.moe.numExperts === 4, `${method}: the export keeps 4 experts per layer`);
        const samples = await loadSamples(heldOut, exported.tokenizer, { maxRows: ROWS });
        const result = await new Evaluator(runtime, samples.samples).evaluate(undefined, ['loss']);
        assert.ok(Math.abs(result.values.loss! - planLoss.value) <= 1e-5, `${method}: exported loss ${result.values.loss} vs plan ${planLoss.value}`);
      } finally {
        await runtime.close();
        await exported.weights.close();
      }
    });
  }
});
