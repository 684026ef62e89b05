/**
 * A new family at real layer shapes: DeepSeek-V2-Lite's layers (multi-head latent attention with q_proj,
 * kv_lora_rank 512, 64 routed experts top-6 of moe_intermediate 1408, 2 shared experts, the dense first layer
 * of intermediate 10944) beside OLMoE-1B-7B's (an existing family: 64 experts top-8 of 1024) in the same run.
 * Two layers of each (V2-Lite: its dense layer 0 and one MoE layer; OLMoE: two MoE layers), vocabulary cut to
 * 32768 for both (the layers are what differs; the head is the same product for both). Synthetic bf16
 * checkpoints with the published names (realShapeCheckpoint.ts), computed in fp32.
 * Measured 2026-12-03 on the shared 2-core machine (load average ~7): V2-Lite 38 tokens/s, OLMoE 53 tokens/s, peak
 * RSS 4.7 GB; the runs of one model spread from 14 to 27 s, so only the order of magnitude is telling there.
 * Reported: tokens/second of a profile forward (loss + every MoE capture) over 4 sequences of 256 tokens,
 * median of 3 after a warm-up, at 2 threads; peak RSS. No bar: the figure for the new family, beside one we know.
 * Run: npm run bench -- deepseek   (or node --expose-gc --import tsx bench/deepseekShape.bench.ts)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint } from '../server/src/checkpoint';
import { ModelEngine } from '../server/src/runtime/modelEngine';
import { Prng } from '../test/support/prng';
import type { RandomCheckpointOptions } from '../test/support/randomCheckpoint';
import { peakRssBytes } from './peakRss';
import { writeRealShapeCheckpoint } from './realShapeCheckpoint';

const VOCAB = 32768;
const MODELS: { name: string; options: RandomCheckpointOptions }[] = [
  {
    name: 'DeepSeek-V2-Lite layers 0-1 (dense + MoE, MLA)',
    options: {
      architecture: 'DeepseekV2ForCausalLM', seed: 3, vocabSize: VOCAB, hiddenSize: 2048, numLayers: 2, numHeads: 16, numExperts: 64, topK: 6, expertIntermediateSize: 1408, denseIntermediateSize: 10944,
      deepseek: { qLoraRank: null, kvLoraRank: 512, nopeHeadDim: 128, ropeHeadDim: 64, vHeadDim: 128, nSharedExperts: 2, firstKDenseReplace: 1 },
    },
  },
  {
    name: 'OLMoE-1B-7B layers 0-1 (MoE, MoE)',
    options: { architecture: 'OlmoeForCausalLM', seed: 1, vocabSize: VOCAB, hiddenSize: 2048, numLayers: 2, numHeads: 16, numKvHeads: 16, numExperts: 64, topK: 8, expertIntermediateSize: 1024 },
  },
];

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'moe-bench-deepseek-'));
  const prng = new Prng(5);
  const sequences = Array.from({ length: 4 }, () => Int32Array.from({ length: 256 }, () => Math.floor(prng.next() * VOCAB)));
  const tokens = sequences.reduce((n, s) => n + s.length, 0);
  try {
    for (const { name, options } of MODELS) {
      const folder = join(root, options.architecture);
      const written = await writeRealShapeCheckpoint(folder, options);
      const model = await loadCheckpoint(folder);
      const engine = await ModelEngine.create(model.spec, model.weights, { threads: 2 });
      try {
        const run = async () => {
          const start = performance.now();
          await engine.forward({ sequences, outputs: { loss: true, moe: true } });
          return (performance.now() - start) / 1000;
        };
        await run();
        const times = [await run(), await run(), await run()].sort((a, b) => a - b);
        const seconds = times[1];
        console.log(`${name}: ${(tokens / seconds).toFixed(0)} tokens/s (${(seconds * 1000).toFixed(0)} ms for ${tokens} tokens; runs ${times.map((t) => t.toFixed(2)).join(', ')} s), bf16 weights ${(written.bytes / 1e9).toFixed(2)} GB`);
      } finally {
        await engine.close();
        await model.weights.close();
        rmSync(folder, { recursive: true, force: true });
      }
    }
    // The machine may be shared: the load average says how far to trust the figures.
    console.log(`peak RSS ${(peakRssBytes() / 1e9).toFixed(2)} GB; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} cores`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

void main();
