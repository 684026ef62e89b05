import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadTokenizer } from '../../../server/src/checkpoint';
import type { TextTokenizer } from '../../../server/src/checkpoint/modelSpec';
import { Evaluator, baselineCacheKey, cachedBaseline, chunkByTokens, clearBaselineMemory, loadSamples } from '../../../server/src/evaluate';
import { ModelRuntime, type RuntimePlan } from '../../../server/src/runtime';
import { writeRandomCheckpoint } from '../../support/randomCheckpoint';

const TEXTS = ['the quick brown fox jumps over the lazy dog', 'pack my box with five dozen liquor jugs', 'a', 'sphinx of black quartz, judge my vow; 12 + 30 = 42', 'hello world hello world hello'];
const CHOICES = [
  { prompt: '2 + 2 =', choices: [' 4', ' 5', ' 22'], label: 0 },
  { prompt: 'The sky is', choices: [' blue', ' green'], label: 1 },
  { prompt: 'x', choices: [' y', ' zz', ' w'], label: 2 },
];

/** An independent reference: float64 log-softmax of every row, straight from the runtime's logits. */
function logSoftmax(logits: Float32Array, row: number, vocab: number): Float64Array {
  const out = new Float64Array(vocab);
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) max = Math.max(max, logits[row * vocab + i]);
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[row * vocab + i] - max);
  for (let i = 0; i < vocab; i++) out[i] = logits[row * vocab + i] - max - Math.log(sum);
  return out;
}

function maxIndex(values: Float64Array): number {
  let best = 0;
  values.forEach((v, i) => (v > values[best] ? (best = i) : undefined));
  return best;
}

describe('Evaluator', () => {
  let dir: string;
  let runtime: ModelRuntime;
  let tokenizer: TextTokenizer;
  let textFile: string;
  let choiceFile: string;
  const plan: RuntimePlan = { layers: { 0: { keptExperts: [true, false, true, false, true, false, true, false] }, 1: { keptExperts: [false, true, true, true, false, false, false, false] } } };

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-evaluate-'));
    const checkpoint = await writeRandomCheckpoint(path.join(dir, 'model'), { architecture: 'MixtralForCausalLM', numLayers: 2, numExperts: 8, topK: 2, seed: 3 });
    textFile = path.join(dir, 'text.jsonl');
    choiceFile = path.join(dir, 'mc.jsonl');
    fs.writeFileSync(textFile, TEXTS.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    fs.writeFileSync(choiceFile, CHOICES.map((row) => JSON.stringify(row)).join('\n') + '\n');
    tokenizer = await loadTokenizer(checkpoint.folder);
    runtime = await ModelRuntime.open(checkpoint.folder, { threads: 1 });
  });

  after(async () => {
    await runtime?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('measures loss, perplexity, KL and top-1 agreement as an independent computation from logits does', async () => {
    const { samples } = await loadSamples(textFile, tokenizer);
    assert.equal(samples.kind, 'text');
    if (samples.kind !== 'text') return;
    const vocab = runtime.model.vocabSize;
    const full = await runtime.forward({ sequences: samples.sequences, outputs: { logits: 'all' } });
    const pruned = await runtime.forward({ sequences: samples.sequences, outputs: { logits: 'all' }, plan });
    let loss = 0;
    let kl = 0;
    let agree = 0;
    let count = 0;
    const sequenceLoss: number[] = [];
    samples.sequences.forEach((ids, s) => {
      sequenceLoss.push(0);
      for (let t = 0; t + 1 < ids.length; t++) {
        const p = logSoftmax(full.sequences[s].logits!, t, vocab);
        const q = logSoftmax(pruned.sequences[s].logits!, t, vocab);
        loss -= q[ids[t + 1]];
        sequenceLoss[s] -= q[ids[t + 1]];
        for (let v = 0; v < vocab; v++) kl += Math.exp(p[v]) * (p[v] - q[v]);
        if (maxIndex(p) === maxIndex(q)) agree++;
        count++;
      }
    });
    const result = await new Evaluator(runtime, samples).evaluate(plan);
    assert.equal(result.tokens, count);
    assert.ok(Math.abs(result.values.loss! - loss / count) < 1e-4, `loss ${result.values.loss} vs ${loss / count}`);
    assert.ok(Math.abs(result.values.perplexity! - Math.exp(loss / count)) / Math.exp(loss / count) < 1e-4);
    assert.ok(Math.abs(result.values.kl! - kl / count) < 1e-5, `kl ${result.values.kl} vs ${kl / count}`);
    assert.ok(kl / count > 0, 'the plan changes the model');
    assert.equal(result.values.top1Agreement, agree / count);
    // Chunked (one sequence per chunk) gives the same numbers.
    const chunked = await new Evaluator(runtime, samples, { maxLogitFloats: 1 }).evaluate(plan);
    assert.ok(Math.abs(chunked.values.kl! - result.values.kl!) < 1e-9);
    assert.ok(Math.abs(chunked.values.loss! - result.values.loss!) < 1e-5);
    // Fitness is the negative loss; its per-sample shares are each sequence's loss over all positions.
    assert.ok(Math.abs((await new Evaluator(runtime, samples).fitness(plan)) + result.values.loss!) < 1e-9);
    const score = await new Evaluator(runtime, samples).score(plan);
    assert.equal(score.samples.length, samples.sequences.length);
    assert.ok(Math.abs(score.samples.reduce((a, b) => a + b, 0) - score.value) < 1e-12);
    sequenceLoss.forEach((value, s) => assert.ok(Math.abs(score.samples[s] + value / count) < 1e-5, `sequence ${s}: ${score.samples[s]} vs ${-value / count}`));
  });

  it('gives KL 0 and agreement 1 for a plan that keeps every expert', async () => {
    const { samples } = await loadSamples(textFile, tokenizer);
    const identity: RuntimePlan = { layers: { 0: { keptExperts: new Array(8).fill(true) }, 1: {} } };
    const result = await new Evaluator(runtime, samples).evaluate(identity);
    assert.ok(result.values.kl! < 1e-9, `kl ${result.values.kl}`);
    assert.equal(result.values.top1Agreement, 1);
    const baseline = await new Evaluator(runtime, samples).evaluate(undefined, ['loss']);
    assert.ok(Math.abs(baseline.values.loss! - result.values.loss!) < 1e-6);
  });

  it('scores multiple choice by the choice tokens\' log-likelihood given the prompt', async () => {
    const loaded = await loadSamples(choiceFile, tokenizer);
    assert.equal(loaded.samples.kind, 'choice');
    if (loaded.samples.kind !== 'choice') return;
    const vocab = runtime.model.vocabSize;
    let correct = 0;
    const itemCorrect: number[] = [];
    for (const row of CHOICES) {
      const promptLength = tokenizer.encode(row.prompt).length;
      const scores: number[] = [];
      for (const choice of row.choices) {
        const ids = tokenizer.encode(row.prompt + choice);
        const { sequences } = await runtime.forward({ sequences: [Int32Array.from(ids)], outputs: { logits: 'all' }, plan });
        let score = 0;
        for (let k = promptLength; k < ids.length; k++) score += logSoftmax(sequences[0].logits!, k - 1, vocab)[ids[k]];
        scores.push(score);
      }
      if (scores.indexOf(Math.max(...scores)) === row.label) correct++;
      itemCorrect.push(scores.indexOf(Math.max(...scores)) === row.label ? 1 : 0);
    }
    const result = await new Evaluator(runtime, loaded.samples).evaluate(plan);
    assert.deepEqual(Object.keys(result.values), ['accuracy']);
    assert.equal(result.values.accuracy, correct / CHOICES.length);
    assert.equal(result.samples, CHOICES.length);
    const fitness = await new Evaluator(runtime, loaded.samples).fitness(plan);
    assert.ok(fitness <= result.values.accuracy! && fitness > result.values.accuracy! - 0.1);
    // Each item's share: its correctness over the item count, less its small loss tie-break.
    const score = await new Evaluator(runtime, loaded.samples).score(plan);
    assert.ok(Math.abs(score.samples.reduce((a, b) => a + b, 0) - fitness) < 1e-12);
    itemCorrect.forEach((c, i) => assert.ok(score.samples[i] <= c / CHOICES.length && score.samples[i] > c / CHOICES.length - 0.01, `item ${i}`));
  });

  it('evaluates and scores several plans in one pass exactly as one at a time, text and multiple choice', async () => {
    const other: RuntimePlan = { layers: { 1: { topK: 1 } } };
    for (const file of [textFile, choiceFile]) {
      const evaluator = new Evaluator(runtime, (await loadSamples(file, tokenizer)).samples);
      const together = await evaluator.evaluateMany([plan, undefined, other]);
      assert.deepEqual(together, [await evaluator.evaluate(plan), await evaluator.evaluate(undefined), await evaluator.evaluate(other)]);
      const scores = await evaluator.scoreMany([plan, other]);
      assert.deepEqual(scores, [await evaluator.score(plan), await evaluator.score(other)]);
    }
  });

  it('caches baselines in memory and on disk', async () => {
    clearBaselineMemory();
    const folder = path.join(dir, 'baselines');
    const key = { fingerprint: 'f', contentSha256: 'c', sequenceLength: 256 };
    let computed = 0;
    const compute = async () => {
      computed++;
      return { values: { loss: 1.5 }, samples: 2, tokens: 10 };
    };
    assert.equal((await cachedBaseline(key, compute, folder)).values.loss, 1.5);
    assert.equal((await cachedBaseline(key, compute, folder)).values.loss, 1.5);
    assert.equal(computed, 1);
    assert.ok(fs.existsSync(path.join(folder, `${baselineCacheKey(key)}.json`)));
    clearBaselineMemory();
    assert.equal((await cachedBaseline(key, compute, folder)).values.loss, 1.5);
    assert.equal(computed, 1, 'read back from disk');
    assert.notEqual(baselineCacheKey(key), baselineCacheKey({ ...key, maxRows: 10 }));
  });

  it('chunks sequences by tokens, a long one alone', () => {
    const seq = (n: number) => new Int32Array(n);
    assert.deepEqual(chunkByTokens([seq(3), seq(3), seq(10), seq(1)], 6).map((c) => c.map((s) => s.length)), [[3, 3], [10], [1]]);
  });
});
