/** The export evaluates like the plan applied in the runtime: same logits from the exported folder as from the source with the equivalent RuntimePlan. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadCheckpoint } from '../../../server/src/checkpoint';
import { exportHuggingFace, type ExportLayerPlan } from '../../../server/src/export';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import type { RuntimePlan } from '../../../server/src/runtime/runtimePlan';
import { Prng } from '../../support/prng';
import { assertClose, randomSequences } from '../runtime/runtimeFixtures';
import { moeLayers, planFor, writeAndLoad } from './exportFixtures';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-export-runtime-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const oneHot = (at: number) => Array.from({ length: 8 }, (_, j) => (j === at ? 1 : 0));
const PLANS: Record<string, ExportLayerPlan> = {
  prune: { keptExperts: [6, 1, 3, 4], topK: 2 },
  merge: {
    keptExperts: [0, 3, 5, 7],
    mergeMatrix: [[0.5, 0.5, 0, 0, 0, 0, 0, 0], oneHot(3), [0, 0, 0, 0, 0.25, 0.75, 0, 0], [0, 0, 0, 0, 0, 0, 0.4, 0.6]],
    routerMap: [[0.5, 0.5, 0, 0, 0, 0, 0, 0], oneHot(3), oneHot(5), [0, 0, 0, 0, 0, 0, 0.5, 0.5]],
  },
};
/** The merge with UNCURL's alignment: each merged member's neurons renumbered (expert 3 is copied, its order changes nothing). */
const prng = new Prng(16);
PLANS['aligned merge'] = { ...PLANS.merge, neuronOrder: { 1: prng.permutation(32), 4: prng.permutation(32), 6: prng.permutation(32), 3: prng.permutation(32) } };

/** What the runtime needs to compute the same model from the unchanged source. */
function runtimePlanOf(layers: number[], plan: ExportLayerPlan): RuntimePlan {
  const rows = plan.keptExperts.map(oneHot);
  return { layers: Object.fromEntries(layers.map((layer) => [layer, { routerMap: plan.routerMap ?? rows, mergeMatrix: plan.mergeMatrix ?? rows, topK: plan.topK, ...(plan.neuronOrder && { neuronOrder: plan.neuronOrder }) }])) };
}

async function logits(folder: string, plan?: RuntimePlan): Promise<Float32Array[]> {
  const { spec, weights } = await loadCheckpoint(folder);
  const engine = await ModelEngine.create(spec, weights);
  try {
    const result = await engine.forward({ sequences: randomSequences([11, 5, 8], spec.vocabSize, 9), outputs: { logits: 'all' }, plan });
    return result.sequences.map((sequence) => sequence.logits!);
  } finally {
    await engine.close();
  }
}

describe('export round trip through the runtime', () => {
  for (const architecture of ['MixtralForCausalLM', 'Qwen2MoeForCausalLM', 'OlmoeForCausalLM'] as const) {
    for (const [label, layerPlan] of Object.entries(PLANS)) {
      it(`${architecture} F32 ${label}: export logits == source logits with the equivalent RuntimePlan`, async () => {
        const sourceFolder = join(root, `${architecture}-${label}-source`);
        const source = await writeAndLoad(sourceFolder, { architecture, seed: 21, numLayers: 3 });
        const layers = moeLayers(source.spec);
        try {
          await exportHuggingFace(source, planFor(source.spec, () => layerPlan), join(root, `${architecture}-${label}-export`));
        } finally {
          await source.weights.close();
        }
        const expected = await logits(sourceFolder, runtimePlanOf(layers, layerPlan));
        const actual = await logits(join(root, `${architecture}-${label}-export`));
        expected.forEach((sequence, s) => assertClose(actual[s], sequence, `sequence ${s} logits`));
      });
    }
  }
});
