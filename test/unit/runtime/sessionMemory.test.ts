/**
 * The process's real peak memory against what planMemory prices, in a child process of its own (its
 * VmHWM is then this model's alone). The plan counts one batch's intermediates once; onnxruntime's
 * per-session CPU arena would keep every session's intermediates after its run, one batch's worth per
 * loaded layer: on OLMoE-1B-7B int8 with 6 of 16 layers resident that was about 0.33 GB a layer
 * (a streamed profile under a 6 GB budget was killed at 7 GB). This model is shaped so that the
 * arenas, if kept, would exceed the plan by more than the layers themselves weigh.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseModelConfig } from '../../../server/src/checkpoint';
import { MIN_HIDDEN_STATE_BYTES, planMemory, type Precision } from '../../../server/src/runtime/memoryBudget';
import { ModelRuntime } from '../../../server/src/runtime/modelRuntime';
import { writeRandomCheckpoint } from '../../support/randomCheckpoint';
import { randomSequences } from './runtimeFixtures';

const CHILD = process.env.MOE_SESSION_MEMORY_CHILD;
const SEQUENCES = 16;
const LENGTH = 256;

if (CHILD) {
  void (async () => {
    const { folder, precision } = JSON.parse(CHILD) as { folder: string; precision: Precision };
    const runtime = await ModelRuntime.open(folder, { threads: 1, precision });
    const sequences = randomSequences(Array(SEQUENCES).fill(LENGTH), 2048, 3);
    // Twice: a retained arena shows after the first run; the second shows whether it keeps growing.
    for (let i = 0; i < 2; i++) await runtime.forward({ sequences, outputs: { loss: true, moe: true } });
    await runtime.close();
    const hwm = Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
    process.stdout.write(`${JSON.stringify({ hwm })}\n`);
  })();
} else {
  describe('peak memory of a resident model against its memory plan', { skip: process.platform !== 'linux' && 'reads /proc/self/status' }, () => {
    for (const precision of ['fp32', 'int8'] as const) {
      it(`${precision}: six layers and their forwards stay within the priced total`, async () => {
        const folder = await mkdtemp(join(tmpdir(), 'moe-session-memory-'));
        try {
          const { config } = await writeRandomCheckpoint(folder, {
            architecture: 'MixtralForCausalLM', seed: 5, vocabSize: 2048, hiddenSize: 512, numLayers: 6, numHeads: 8, numKvHeads: 8, numExperts: 8, topK: 2, expertIntermediateSize: 1024,
          });
          const { tensors: _names, ...shape } = parseModelConfig(config);
          const plan = planMemory(shape, { budgetBytes: 1e12, precision });
          assert.equal(plan.policy, 'resident');
          const child = spawnSync(process.execPath, ['--import', 'tsx', __filename], { env: { ...process.env, MOE_SESSION_MEMORY_CHILD: JSON.stringify({ folder, precision }) }, encoding: 'utf8', timeout: 120_000 });
          assert.equal(child.status, 0, child.stderr);
          const { hwm } = JSON.parse(child.stdout.trim().split('\n').pop()!) as { hwm: number };
          const layers = plan.layerBytes.reduce((a, b) => a + b, 0);
          // The plan's total with this work set's hidden states (in and out of a layer) for its reserve.
          const priced = plan.totalBytes - MIN_HIDDEN_STATE_BYTES + 2 * SEQUENCES * LENGTH * 512 * 4;
          assert.ok(hwm <= priced, `peak RSS ${(hwm / 1e6).toFixed(0)} MB over the plan's ${(priced / 1e6).toFixed(0)} MB (layers ${(layers / 1e6).toFixed(0)} MB, one batch's work ${(plan.workBytes / 1e6).toFixed(0)} MB)`);
        } finally {
          await rm(folder, { recursive: true, force: true });
        }
      });
    }
  });
}
