import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { WeightSource } from '../../../server/src/checkpoint/modelSpec';
import type { ForwardResult } from '../../../server/src/runtime/forwardTypes';
import { ModelEngine } from '../../../server/src/runtime/modelEngine';
import { randomSequences, withCheckpoint } from './runtimeFixtures';

/**
 * A bf16 checkpoint's layers are widened (fp32) or quantized (int8) straight from the stored bits, through
 * reused buffers, while the next tensor is read (graphBuilder's external data writer). The same checkpoint
 * seen as fp32 (every tensor decoded first, as any non-bf16 checkpoint is read, and serialised inside the
 * protobuf) is the independent path: both must give the same results bit for bit.
 */
function decodedFirst(weights: WeightSource): WeightSource {
  return new Proxy(weights, {
    get(target, key) {
      if (key === 'info') return (name: string) => ({ ...target.info(name), dtype: 'F32' });
      const value = Reflect.get(target, key) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

function flatten(result: ForwardResult): number[] {
  return result.sequences.flatMap((s) => [...s.logits!, ...s.loss!, ...(s.moe ?? []).flatMap((m) => [...m.routerLogits!, ...m.selectedExperts!, ...m.gateWeights!])]);
}

describe('loading bf16 layers from their stored bits', () => {
  for (const precision of ['fp32', 'int8'] as const) {
    it(`gives the same ${precision} results as decoding every tensor first`, async () => {
      await withCheckpoint({ architecture: 'Qwen2MoeForCausalLM', dtype: 'BF16', seed: 11, hiddenSize: 32, numLayers: 2, numExperts: 6, topK: 2, expertIntermediateSize: 22 }, async ({ spec, weights }) => {
        // externalDataThreshold 0: every layer goes through the external data writer, as large layers do.
        const fromBits = await ModelEngine.create(spec, weights, { precision, externalDataThreshold: 0 });
        const decoded = await ModelEngine.create(spec, decodedFirst(weights), { precision });
        const request = { sequences: randomSequences([9, 5, 12], spec.vocabSize), outputs: { logits: 'all' as const, loss: true, moe: true } };
        const [a, b] = [await fromBits.forward(request), await decoded.forward(request)];
        const [x, y] = [flatten(a), flatten(b)];
        assert.ok(x.length > 1000);
        assert.deepEqual(x, y);
        await Promise.all([fromBits.close(), decoded.close()]);
      });
    });
  }
});
