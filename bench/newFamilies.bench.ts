/**
 * A forward's throughput on GPT-OSS-20B's layer shapes (issue #14), beside an existing family of the same
 * scale in the same run: synthetic checkpoints written as published (bench/realShapeCheckpoint.ts), a few
 * layers each, into one temporary folder removed afterwards.
 *   - GPT-OSS-20B: hidden 2880, 64 query / 8 kv heads of 64, 32 experts of 2880, top-4, experts in MXFP4
 *     (read and dequantized per expert at load), router and expert biases, sinks; layer 0 sliding (128), layer 1 full.
 *   - Qwen3-30B-A3B (the existing family it sits beside): hidden 2048, 32 / 4 heads of 128, 128 experts of 768, top-8.
 * Both with the vocabulary cut to 32768 (the head is the same for both and is not what this measures; the full
 * 201k-token GPT-OSS embedding and head alone would be 4.6 GB as fp32) and two layers.
 * Each row: tokens/second of a forward with loss and every MoE capture (what profiling runs), 2 threads, int8
 * layer weights (fp32 GPT-OSS layers are 3.2 GB each, over this machine's per-job memory), median of the timed
 * runs after a warm-up; load seconds; the process's peak RSS so far.
 *
 * Measured 2026-12-03 (2 cores shared by 7 sessions, load average 10-11, so both rows are slow alike):
 *   GPT-OSS-20B layer shapes (MXFP4 experts)  77 tokens/s (median 13.27 s; first forward with load 115.5 s; 1.33 GB checkpoint)
 *   Qwen3-30B-A3B layer shapes (bf16 experts) 88 tokens/s (median 11.68 s; first forward with load 69.4 s; 2.76 GB checkpoint)
 *   peak RSS 3.69 GB. Per token GPT-OSS's two layers do about 258 M multiply-adds (4 experts of 3 × 2880², attention
 *   of 64 heads), Qwen3's about 113 M, so GPT-OSS runs its larger products more efficiently; its longer load is
 *   MXFP4 dequantization (about 0.25 s an expert here) and int8 quantization of 32 × 3 2880² matrices a layer.
 *
 * Run: npm run bench -- newFamilies   (or node --expose-gc --import tsx bench/newFamilies.bench.ts)
 * Environment: BENCH_FAMILY_LAYERS (default 2), BENCH_FAMILY_TOKENS (default 1024, in sequences of 256),
 * BENCH_FAMILY_PRECISION (int8 | fp32, default int8).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint } from '../server/src/checkpoint';
import type { Precision } from '../server/src/runtime/memoryBudget';
import { ModelEngine } from '../server/src/runtime/modelEngine';
import { Prng } from '../test/support/prng';
import type { RandomCheckpointOptions } from '../test/support/randomCheckpoint';
import { peakRssBytes } from './peakRss';
import { writeRealShapeCheckpoint } from './realShapeCheckpoint';

const LAYERS = Number(process.env.BENCH_FAMILY_LAYERS ?? 2);
const TOKENS = Number(process.env.BENCH_FAMILY_TOKENS ?? 1024);
const PRECISION = (process.env.BENCH_FAMILY_PRECISION ?? 'int8') as Precision;
const SEQUENCE_LENGTH = 256;
const VOCAB = 32768;
const THREADS = 2;
const REPEATS = 3;

const MODELS: { name: string; checkpoint: RandomCheckpointOptions }[] = [
  {
    name: 'GPT-OSS-20B layer shapes (MXFP4 experts)',
    checkpoint: { architecture: 'GptOssForCausalLM', seed: 1, vocabSize: VOCAB, hiddenSize: 2880, numLayers: LAYERS, numHeads: 64, numKvHeads: 8, headDim: 64, numExperts: 32, topK: 4, expertIntermediateSize: 2880, slidingWindow: 128, mxfp4: true },
  },
  {
    name: 'Qwen3-30B-A3B layer shapes (bf16 experts)',
    checkpoint: { architecture: 'Qwen3MoeForCausalLM', seed: 2, vocabSize: VOCAB, hiddenSize: 2048, numLayers: LAYERS, numHeads: 32, numKvHeads: 4, headDim: 128, numExperts: 128, topK: 8, expertIntermediateSize: 768, ropeTheta: 1e6 },
  },
];

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'moe-bench-families-'));
  const prng = new Prng(5);
  const sequences = Array.from({ length: Math.max(1, Math.round(TOKENS / SEQUENCE_LENGTH)) }, () => Int32Array.from({ length: SEQUENCE_LENGTH }, () => Math.floor(prng.next() * VOCAB)));
  const tokens = sequences.length * SEQUENCE_LENGTH;
  console.log(`${LAYERS} layers each, ${tokens} tokens (${sequences.length} × ${SEQUENCE_LENGTH}), ${THREADS} threads, ${PRECISION} layer weights; load average ${loadavg()[0].toFixed(2)}`);
  try {
    for (const [i, model] of MODELS.entries()) {
      const folder = join(root, String(i));
      const written = await writeRealShapeCheckpoint(folder, model.checkpoint);
      const loadStart = performance.now();
      const { spec, weights } = await loadCheckpoint(folder);
      const engine = await ModelEngine.create(spec, weights, { threads: THREADS, precision: PRECISION, memoryBudget: 5e9 });
      try {
        // The first forward loads every layer (and dequantizes MXFP4 experts); the timed ones reuse them.
        await engine.forward({ sequences, outputs: { loss: true, moe: true } });
        const loadSeconds = (performance.now() - loadStart) / 1000;
        const times: number[] = [];
        for (let r = 0; r < REPEATS; r++) {
          const started = performance.now();
          await engine.forward({ sequences, outputs: { loss: true, moe: true } });
          times.push((performance.now() - started) / 1000);
        }
        times.sort((a, b) => a - b);
        const median = times[Math.floor(times.length / 2)];
        console.log(
          `${model.name.padEnd(44)} ${(tokens / median).toFixed(0).padStart(6)} tokens/s  (median ${median.toFixed(2)} s of ${times.map((t) => t.toFixed(2)).join(', ')}; ` +
            `first forward with load ${loadSeconds.toFixed(1)} s; checkpoint ${(written.bytes / 1e9).toFixed(2)} GB; peak RSS so far ${(peakRssBytes() / 1e9).toFixed(2)} GB)`,
        );
      } finally {
        await engine.close();
        await weights.close();
      }
      rmSync(folder, { recursive: true, force: true });
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
