// The shipped demo models, loaded by our own loader and run by our own runtime, must reproduce the
// validation loss that tools/demo-model/train.py reported (for the Mixtral, check_model.py re-derived it
// with NumPy), following the protocol written into demo/data/validation_report.json. The OLMoE
// (demo/models-extra/olmoe) checks the other routing: top-4 weights not renormalised, q/k norms.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { loadCheckpoint } from '../../../server/src/checkpoint';
import { ModelRuntime } from '../../../server/src/runtime/modelRuntime';

const root = path.resolve(__dirname, '../../..');
const MODELS = [
  { folder: 'demo/model', report: 'demo/data/validation_report.json' },
  { folder: 'demo/models-extra/olmoe', report: 'demo/data/validation_report.olmoe.json' },
];

describe('demo models', () => {
  for (const model of MODELS) it(`${model.folder} reproduces the validation loss train.py reported, for every domain`, { timeout: 300_000 }, async () => {
    const report = JSON.parse(fs.readFileSync(path.join(root, model.report), 'utf8')) as {
      validation: Record<string, { records: number; predicted_tokens: number; mean_loss: number }>;
    };
    const checkpoint = await loadCheckpoint(path.join(root, model.folder));
    const runtime = await ModelRuntime.open(path.join(root, model.folder), { threads: 1 });
    try {
      for (const [domain, expected] of Object.entries(report.validation)) {
        const lines = fs.readFileSync(path.join(root, `demo/data/${domain}.valid.jsonl`), 'utf8').split('\n').filter((line) => line.trim());
        // Protocol: encode with the tokenizer's special tokens (<s> first), one record per sequence, no truncation.
        const sequences = lines.map((line) => Int32Array.from(checkpoint.tokenizer.encode((JSON.parse(line) as { text: string }).text)));
        assert.equal(sequences.length, expected.records, `${domain}: record count`);
        assert.equal(sequences[0][0], 1, `${domain}: the first id is <s>`);
        const result = await runtime.forward({ sequences, outputs: { loss: true } });
        let sum = 0;
        let count = 0;
        for (const { loss } of result.sequences) {
          for (const value of loss!) sum += value;
          count += loss!.length;
        }
        assert.equal(count, expected.predicted_tokens, `${domain}: predicted tokens`);
        const mean = sum / count;
        assert.ok(Math.abs(mean - expected.mean_loss) <= 1e-4 * expected.mean_loss, `${domain}: loss ${mean} vs reported ${expected.mean_loss}`);
      }
    } finally {
      await runtime.close();
      await checkpoint.weights.close();
    }
  });
});
