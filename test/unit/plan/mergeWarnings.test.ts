import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { describeHeavyMerges, heavyMerges, sharesFromCounts } from '../../../server/src/plan/mergeWarnings';
import { generatePlanFile } from '../../../server/src/plan/run';
import { RuntimePool } from '../../../server/src/profile/run/runtimePool';

describe('warnings for merges of experts the calibration data relies on', () => {
  // Eight experts: 0 and 1 take almost every routed slot, 2 a little, the rest nothing. 2/E = 0.25.
  const shares = sharesFromCounts([500, 490, 10, 0, 0, 0, 0, 0]);
  const row = (entries: Record<number, number>) => Array.from({ length: 8 }, (_, j) => entries[j] ?? 0);

  it('flags a row that averages two heavily used experts, and only such rows', () => {
    assert.deepEqual(shares.slice(0, 3), [0.5, 0.49, 0.01]);
    const merges = heavyMerges([
      { layer: 0, keptExperts: [0, 3], mergeMatrix: [row({ 0: 0.5, 1: 0.5 }), row({ 3: 1 })], routerMap: [row({ 0: 1 }), row({ 3: 1 })] },
      // Expert 0 with a lightly used one, and with 1 at a coefficient too small to matter (EEP's noise).
      { layer: 1, keptExperts: [0, 1], mergeMatrix: [row({ 0: 0.9, 2: 0.1 }), row({ 1: 0.95, 0: 0.05 })], routerMap: [row({ 0: 1 }), row({ 1: 1 })] },
      { layer: 2, keptExperts: [0, 1] },
    ], () => shares);
    assert.deepEqual(merges, [{ layer: 0, row: 0, experts: [{ id: 0, share: 0.5 }, { id: 1, share: 0.49 }] }]);
    assert.match(describeHeavyMerges(merges)!, /layer 0 merges experts 0 \(50%\), 1 \(49%\)/);
    assert.equal(describeHeavyMerges([]), undefined);
  });

  it('counts an expert at exactly twice the uniform share, and skips layers without statistics', () => {
    const even = sharesFromCounts([25, 25, 25, 25, 0, 0, 0, 0]);
    const layers = [{ layer: 4, keptExperts: [0], mergeMatrix: [row({ 0: 0.5, 1: 0.5 })], routerMap: [row({ 0: 1 })] }];
    assert.equal(heavyMerges(layers, () => even).length, 1);
    assert.deepEqual(heavyMerges(layers, () => undefined), []);
  });

  describe('on the demo model', () => {
    const root = path.resolve(__dirname, '../../..');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-merge-warnings-'));
    const runtimes = new RuntimePool();
    after(async () => {
      await runtimes.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const generate = (method: 'uncurl' | 'frequency') => generatePlanFile({
      model: path.join(root, 'demo/model'), method, targetExperts: 4, seed: 0, maxRows: 48, runtimes, threads: 1,
      calibration: [{ file: path.join(root, 'demo/data/arithmetic.train.jsonl') }], output: path.join(dir, `${method}.moeplan.json`),
    });

    it('UNCURL on arithmetic is warned that layer 0 averages experts 3 and 7; a pruning plan gets no warning', { timeout: 120_000 }, async () => {
      // demo/README.md: arithmetic routes 99% of layer 0's slots to experts 3 and 7, and UNCURL merges them.
      const uncurl = await generate('uncurl');
      assert.equal(uncurl.warnings.length, 1);
      assert.match(uncurl.warnings[0], /layer 0 merges experts 3 \(\d+%\), 7 \(\d+%\)/);
      assert.deepEqual((await generate('frequency')).warnings, []);
    });
  });
});
