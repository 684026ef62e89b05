/**
 * Plan search speed on the demo model (run: `node --expose-gc --import tsx bench/plan.bench.ts`):
 * - NAEE, exhaustive for 8 experts keeping 4 (70 subsets per layer), including the captured forward and
 *   every expert's output on the calibration tokens (bar: 60 s);
 * - EEP, 400 candidate evaluations on 32 calibration sequences of 256 tokens, seeded with the heuristics'
 *   plans from NAEE's capture, its merged experts' neurons aligned as a plan run aligns them (bar: 5
 *   minutes on 2 cores, the alignment included). The seeds' cost is reported, not counted.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCheckpoint } from '../server/src/checkpoint';
import { Evaluator } from '../server/src/evaluate';
import { eepSearch, moeLayerShapes, naeePruning } from '../server/src/plan';
import { DEFAULT_NAEE_TOKENS, LayerReconstruction, captureCalibration, heuristicPlans } from '../server/src/plan/run';
import { checkpointAlignmentSource } from '../server/src/plan/run/alignmentSource';
import { toRuntimePlan } from '../server/src/plan/runtimeConversion';
import { modelIdentity, RuntimePool } from '../server/src/profile/run';

const root = path.resolve(__dirname, '..');
const MODEL = path.join(root, 'demo/model');
const SEQUENCES = 32;
const LENGTH = 256;
const EEP_BUDGET = 400;
const THREADS = 2;

async function main(): Promise<void> {
  const identity = await modelIdentity(MODEL);
  const pool = new RuntimePool();
  const { runtime, tokenizer } = await pool.get(identity, THREADS);
  // 32 windows of 256 tokens from the code training split: BOS, then the running text.
  const texts = fs.readFileSync(path.join(root, 'demo/data/code.train.jsonl'), 'utf8').trim().split('\n').map((line) => (JSON.parse(line) as { text: string }).text);
  const stream = (await tokenizer.tokenizeRows(texts.map((text) => ({ text })))).flatMap(({ ids }) => [...ids.slice(1)]);
  const bos = tokenizer.bosTokenId ?? 1;
  const sequences = Array.from({ length: SEQUENCES }, (_, i) => Int32Array.from([bos, ...stream.slice(i * (LENGTH - 1), (i + 1) * (LENGTH - 1))]));
  const shapes = moeLayerShapes(identity.spec);
  const rows: { name: string; seconds: number; bar: number; detail: string }[] = [];

  let started = performance.now();
  const capture = await captureCalibration(runtime, sequences, { inputTokens: DEFAULT_NAEE_TOKENS });
  const checkpoint = await loadCheckpoint(MODEL);
  const reconstruction = await LayerReconstruction.build(identity.spec, checkpoint.weights, capture.layerInputs);
  const built = (performance.now() - started) / 1000;
  let evaluations = 0;
  const layers = await naeePruning({ layers: shapes, target: 4, layerError: async (layer, kept) => reconstruction.error(layer, kept), onProgress: (p) => (evaluations += p.evaluations) });
  const naeeSeconds = (performance.now() - started) / 1000;
  rows.push({ name: `NAEE exhaustive, ${evaluations} subsets (${evaluations / shapes.length} per layer)`, seconds: naeeSeconds, bar: 60, detail: `${built.toFixed(1)} s capture + expert outputs on ${DEFAULT_NAEE_TOKENS} tokens/layer; kept ${layers.map((l) => `[${l.keptExperts.join(',')}]`).join(' ')}` });

  // EEP's seeds come from the same capture and expert outputs (as in a plan run): the heuristics' plans.
  started = performance.now();
  const seeds = await heuristicPlans(capture.statistics, shapes, 4, async (layer, kept) => reconstruction.error(layer, kept));
  const seedSeconds = (performance.now() - started) / 1000;
  const evaluator = new Evaluator(runtime, { kind: 'text', sequences });
  await evaluator.fitness({ layers: {} }); // warm the sessions
  started = performance.now();
  const expertDtype = checkpoint.weights.info(identity.spec.tensors.layer(shapes[0].layer).expert!(0).gate).dtype;
  const alignment = checkpointAlignmentSource(identity.spec, checkpoint.weights, expertDtype);
  const eep = await eepSearch({ layers: shapes, target: 4, fitness: (plan) => evaluator.score(plan), seed: 0, budget: EEP_BUDGET, initial: seeds, alignment });
  const eepSeconds = (performance.now() - started) / 1000;
  await checkpoint.weights.close();
  const seedLoss = Math.min(...(await Promise.all(seeds.map(async (plan) => -(await evaluator.fitness(toRuntimePlan(plan, (layer) => shapes.find((s) => s.layer === layer)!.numExperts)))))));
  rows.push({
    name: `EEP, ${eep.evaluations} evaluations, ${SEQUENCES}×${LENGTH} tokens`,
    seconds: eepSeconds,
    bar: 300,
    detail: `${((eepSeconds * 1000) / eep.evaluations).toFixed(0)} ms per candidate; ${seeds.length} seeds (${seedSeconds.toFixed(1)} s after the NAEE capture), best seed loss ${seedLoss.toFixed(4)}, prune result ${(-eep.pruned!.fitness).toFixed(4)}, final ${(-eep.fitness).toFixed(4)}`,
  });

  await pool.close();
  console.log('| benchmark | seconds | bar | result | detail |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const row of rows) console.log(`| ${row.name} | ${row.seconds.toFixed(1)} | ≤ ${row.bar} | ${row.seconds <= row.bar ? 'PASS' : 'FAIL'} | ${row.detail} |`);
}

void main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
