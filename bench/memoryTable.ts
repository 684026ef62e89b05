/**
 * The README's table of what the common checkpoints need: planMemory's arithmetic on their published
 * shapes (config.json values as Hugging Face ships them), for fp32 and int8, all resident and at 6 GB and
 * 7 GB (a 16 GB laptop's default budget). Prints the Markdown rows: `node --import tsx bench/memoryTable.ts`.
 */
import { parseModelConfig } from '../server/src/checkpoint';
import { formatBytes, MemoryBudgetError, planMemory, type Precision } from '../server/src/runtime/memoryBudget';
import { randomCheckpointConfig, type RandomCheckpointOptions } from '../test/support/randomCheckpoint';

const CHECKPOINTS: { name: string; bf16: string; options: RandomCheckpointOptions }[] = [
  { name: 'allenai/OLMoE-1B-7B', bf16: '13.8 GB', options: { architecture: 'OlmoeForCausalLM', vocabSize: 50304, hiddenSize: 2048, numLayers: 16, numHeads: 16, numKvHeads: 16, numExperts: 64, topK: 8, expertIntermediateSize: 1024 } },
  {
    name: 'Qwen1.5-MoE-A2.7B',
    bf16: '28.6 GB',
    options: { architecture: 'Qwen2MoeForCausalLM', vocabSize: 151936, hiddenSize: 2048, numLayers: 24, numHeads: 16, numKvHeads: 16, numExperts: 60, topK: 4, expertIntermediateSize: 1408, sharedExpertIntermediateSize: 5632, mlpOnlyLayers: [] },
  },
  { name: 'Qwen3-30B-A3B', bf16: '61 GB', options: { architecture: 'Qwen3MoeForCausalLM', vocabSize: 151936, hiddenSize: 2048, numLayers: 48, numHeads: 32, numKvHeads: 4, headDim: 128, numExperts: 128, topK: 8, expertIntermediateSize: 768 } },
  { name: 'Mixtral-8x7B', bf16: '93 GB', options: { architecture: 'MixtralForCausalLM', vocabSize: 32000, hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 8, numExperts: 8, topK: 2, expertIntermediateSize: 14336 } },
];

function cell(shape: Parameters<typeof planMemory>[0], precision: Precision, budgetBytes: number): string {
  try {
    const plan = planMemory(shape, { budgetBytes, precision });
    if (plan.policy === 'resident') return 'all resident';
    const seconds = Math.round(plan.streamedBytesPerPass / 0.3e9);
    const head = plan.headResident ? '' : ' and the head';
    return plan.residentLayers.length > 0 ? `${plan.residentLayers.length} resident, ${plan.layerBytes.length - plan.residentLayers.length} streamed${head}, ~${seconds} s` : `streams ${plan.layerBytes.length} layers${head}, ~${seconds} s loading a pass`;
  } catch (error) {
    if (!(error instanceof MemoryBudgetError)) throw error;
    const floor = planMemory(shape, { budgetBytes: 1e15, precision });
    return `does not fit (one layer ${formatBytes(Math.max(...floor.layerBytes))}; needs at least ${formatBytes(floor.streamingFloorBytes)})`;
  }
}

console.log('| checkpoint | bf16 on disk | fp32: all resident | fp32 at a 6 GB budget | fp32 at 7 GB (16 GB laptop) | int8: all resident | int8 at 6 GB |');
console.log('|---|---|---|---|---|---|---|');
for (const { name, bf16, options } of CHECKPOINTS) {
  const { tensors: _names, ...shape } = parseModelConfig(randomCheckpointConfig(options));
  const total = (precision: Precision) => formatBytes(planMemory(shape, { budgetBytes: 1e15, precision }).totalBytes);
  console.log(`| ${name} | ${bf16} | ${total('fp32')} | ${cell(shape, 'fp32', 6e9)} | ${cell(shape, 'fp32', 7e9)} | ${total('int8')} | ${cell(shape, 'int8', 6e9)} |`);
}
