/**
 * `moe-studio`: the headless face of the same server code, for scripts and CI pipelines.
 * Each command is a small async function from parsed arguments to printed output.
 */
import * as path from 'node:path';
import { loadCheckpoint } from './checkpoint';
import { describeCheckpoint } from './checkpoint/describe';
import { summarizeDataset } from './datasets/summarize';
import { errorMessage, isUserError } from './errors';
import type { FieldSpec } from './profile';
import { profileDataset, sharedRuntimes } from './profile/run';
import type { EvaluationMetric, PlanMethodName } from '../../common/protocol';
import { evaluatePlanFile } from './evaluate';
import { generatePlanFile, readPlanToResume, runSweep } from './plan/run';
import { exportPlanFile, parseByteSize, progressMessage } from './export';

interface Command {
  usage: string;
  description: string;
  run(args: ParsedArgs): Promise<void>;
}

export interface ParsedArgs {
  positional: string[];
  options: Map<string, string | true>;
}

const commands: Record<string, Command> = {
  info: {
    usage: 'moe-studio info --model DIR [--json]',
    description: 'Load a model folder (validating every tensor) and describe it.',
    async run({ options }) {
      const checkpoint = await loadCheckpoint(path.resolve(requiredOption(options, 'model', 'DIR')));
      try {
        const summary = describeCheckpoint(checkpoint);
        if (options.has('json')) {
          console.log(JSON.stringify(summary, null, 2));
          return;
        }
        const millions = (n: number) => `${(n / 1e6).toFixed(2)} M`;
        console.log(`${summary.architecture} at ${summary.folder}`);
        console.log(`  ${summary.layers} layers (${summary.moeLayers.length} MoE), ${summary.numExperts} experts, top-${summary.topK}, hidden ${summary.hiddenSize}, vocab ${summary.vocabSize}`);
        console.log(`  ${millions(summary.parameters)} parameters (${millions(summary.expertParameters)} in experts, ${millions(summary.activeParametersPerToken)} active per token), ${(summary.bytes / 2 ** 20).toFixed(1)} MiB`);
        console.log(`  dtypes: ${Object.entries(summary.dtypes).map(([dtype, count]) => `${dtype} × ${count}`).join(', ')}`);
      } finally {
        await checkpoint.weights.close();
      }
    },
  },
  profile: {
    usage: 'moe-studio profile --model DIR --data FILE [--field NAME|--field A+B] [--out FILE] [--seq-len N] [--max-rows N] [--token-records N] [--threads N] [--force]',
    description: 'Profile expert usage on a dataset; writes a profile file and prints a per-layer summary.',
    async run({ options }) {
      const model = path.resolve(requiredOption(options, 'model', 'DIR'));
      const data = path.resolve(requiredOption(options, 'data', 'FILE'));
      const field = fieldOption(options.get('field'));
      const out = options.get('out');
      const started = Date.now();
      try {
        const result = await profileDataset({
          datasetFile: data,
          modelFolder: model,
          field,
          workspaceFolder: process.cwd(),
          outFile: typeof out === 'string' ? path.resolve(out) : undefined,
          force: options.has('force'),
          settings: {
            ...(options.has('seq-len') ? { sequenceLength: integerOption(options, 'seq-len', 1) } : {}),
            ...(options.has('max-rows') ? { maxRows: integerOption(options, 'max-rows', 0) } : {}),
            ...(options.has('token-records') ? { tokenRecords: integerOption(options, 'token-records', 0) } : {}),
            ...(options.has('threads') ? { threads: integerOption(options, 'threads', 0) } : {}),
          },
          onProgress: ({ tokens, tokensPerSecond, secondsLeft }) =>
            process.stderr.write(`\r${tokens.toLocaleString('en-US')} tokens · ${Math.round(tokensPerSecond).toLocaleString('en-US')} tok/s · ${Math.round(secondsLeft)} s left   `),
        });
        process.stderr.write(result.reused ? 'Reused the saved profile (same model, data, field and settings; --force recomputes).\n' : `\rDone in ${((Date.now() - started) / 1000).toFixed(1)} s.${' '.repeat(30)}\n`);
        const { profile } = result;
        const thresholdIndex = (t: number) => profile.gatingThresholds.findIndex((value) => Math.abs(value - t) < 1e-9);
        const [at01, at02] = [thresholdIndex(0.1), thresholdIndex(0.2)];
        const percent = (share: number) => `${(100 * share).toFixed(1)}%`;
        console.log(`${profile.dataset.rows} rows, ${profile.dataset.tokens} tokens; ${profile.model.architecture}, ${profile.model.numExperts} experts, top-${profile.model.topK}`);
        console.log(`layer  top experts (usage share)              entropy  single-expert share T=0.1  T=0.2`);
        for (const layer of profile.layers) {
          const top = [...layer.usageShare.keys()].sort((a, b) => layer.usageShare[b] - layer.usageShare[a]).slice(0, 3);
          const experts = top.map((expert) => `${expert} (${percent(layer.usageShare[expert])})`).join(', ');
          const single = (index: number) => (index >= 0 ? percent(layer.singleExpertShare[index]) : 'n/a');
          console.log(`${String(layer.layer).padStart(5)}  ${experts.padEnd(38)} ${layer.meanEntropy.toFixed(3).padStart(7)}  ${single(at01).padStart(25)}  ${single(at02).padStart(5)}`);
        }
        for (const note of result.notes) console.log(`note: ${note}`);
        console.log(result.profilePath);
      } finally {
        await sharedRuntimes.close();
      }
    },
  },
  plan: {
    usage: 'moe-studio plan --model DIR --method NAME --keep N|--keep-share X --calibration FILE[,FILE] [--field F] [--seed S] [--budget N] [--similarity cosine|correlation] [--repair routerRefit,outputCompensation] [--resume FILE.moeplan.json] [--profile FILE] [--share X] [--max-loss-increase NATS] [--threads N] --out FILE.moeplan.json',
    description: 'Make a plan (random, frequency, softCount, reap, naee, uncurl, eep; or adaptiveGating with --share or --max-loss-increase and no --keep) from calibration data; never overwrites --out.',
    async run({ options }) {
      const requested = requiredOption(options, 'method', 'NAME');
      const method = requested === 'adaptiveGating' ? requested : methodOption(requested);
      const field = options.has('field') ? fieldOption(options.get('field')) : undefined;
      try {
        const { planPath, plan, warnings } = await generatePlanFile({
          model: path.resolve(requiredOption(options, 'model', 'DIR')),
          method,
          targetExperts: method === 'adaptiveGating' || options.has('keep-share') ? undefined : integerOption(options, 'keep', 1),
          calibration: listOption(options, 'calibration').map((file) => ({ file: path.resolve(file), field })),
          profilePath: typeof options.get('profile') === 'string' ? path.resolve(options.get('profile') as string) : undefined,
          seed: options.has('seed') ? integerOption(options, 'seed', 0) : 0,
          parameters: {
            ...(options.has('budget') && { budget: integerOption(options, 'budget', 1) }),
            // UNCURL's similarity (checked, with its message, where plan parameters are read).
            ...(options.has('similarity') && { similarity: options.get('similarity') }),
            // A global expert budget shared out across layers by marginal loss (checked where plan parameters are read).
            ...(options.has('keep-share') && { keepShare: Number(options.get('keep-share')) }),
            // Closed-form repairs after the method (checked where plan parameters are read).
            ...(options.has('repair') && { repairs: listOption(options, 'repair') }),
            // Adaptive gating within a loss bound (checked where plan parameters are read).
            ...(options.has('max-loss-increase') && { maxLossIncrease: Number(options.get('max-loss-increase')) }),
          },
          singleExpertShare: options.has('share') ? Number(options.get('share')) : undefined,
          // EEP: continue an earlier plan's search.
          ...(options.has('resume') && { resume: readPlanToResume(path.resolve(requiredOption(options, 'resume', 'FILE.moeplan.json'))) }),
          output: path.resolve(requiredOption(options, 'out', 'FILE.moeplan.json')),
          workspaceFolder: process.cwd(),
          threads: options.has('threads') ? integerOption(options, 'threads', 0) : 0,
          onProgress: (message) => process.stderr.write(`${message}\n`),
        });
        for (const layer of plan.layers) console.log(`layer ${layer.layer}: keeps ${layer.keptExperts.join(', ')}${layer.mergeMatrix ? ' (merged)' : ''}${layer.outputScale ? ` (output scales ${layer.outputScale.map((s) => s.toFixed(3)).join(', ')})` : ''}${layer.adaptiveThreshold !== undefined ? `, adaptive gating T = ${layer.adaptiveThreshold.toFixed(3)}` : ''}`);
        console.log(planPath);
        for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
      } finally {
        await sharedRuntimes.close();
      }
    },
  },
  evaluate: {
    usage: 'moe-studio evaluate --plan FILE --data FILE[,FILE] [--field F] [--max-rows N] [--threads N] [--json]',
    description: 'Measure a plan against the full model (loss, perplexity, KL, top-1 agreement; accuracy on multiple-choice data).',
    async run({ options }) {
      const field = options.has('field') ? fieldOption(options.get('field')) : undefined;
      try {
        const result = await evaluatePlanFile({
          plan: path.resolve(requiredOption(options, 'plan', 'FILE')),
          datasets: listOption(options, 'data').map((file) => ({ file: path.resolve(file), field })),
          maxRows: options.has('max-rows') ? integerOption(options, 'max-rows', 1) : undefined,
          workspaceFolder: process.cwd(),
          threads: options.has('threads') ? integerOption(options, 'threads', 0) : 0,
          onProgress: ({ message }) => process.stderr.write(`${message}\n`),
        });
        if (options.has('json')) {
          console.log(JSON.stringify(result.evaluations, null, 2));
          return;
        }
        console.log('dataset                         metric          full model        plan');
        for (const e of result.evaluations) console.log(`${e.dataset.padEnd(31)} ${e.metric.padEnd(14)} ${(e.baseline ?? NaN).toFixed(4).padStart(11)} ${e.value.toFixed(4).padStart(11)}`);
      } finally {
        await sharedRuntimes.close();
      }
    },
  },
  sweep: {
    usage: 'moe-studio sweep --model DIR --methods a,b --calibration FILE[,FILE] --data FILE [--metric M] [--counts 8,7,…] [--seed S] [--max-rows N] [--budget N] [--json]',
    description: 'Quality against experts kept, for several methods side by side on held-out data.',
    async run({ options }) {
      const field = options.has('field') ? fieldOption(options.get('field')) : undefined;
      const budget = options.has('budget') ? integerOption(options, 'budget', 1) : 100;
      try {
        const result = await runSweep({
          model: path.resolve(requiredOption(options, 'model', 'DIR')),
          methods: listOption(options, 'methods').map(methodOption),
          counts: options.has('counts') ? listOption(options, 'counts').map(Number) : [],
          calibration: listOption(options, 'calibration').map((file) => ({ file: path.resolve(file), field })),
          evaluation: { file: path.resolve(requiredOption(options, 'data', 'FILE')), field },
          metric: (typeof options.get('metric') === 'string' ? options.get('metric') : 'loss') as EvaluationMetric,
          seed: options.has('seed') ? integerOption(options, 'seed', 0) : 0,
          maxRows: options.has('max-rows') ? integerOption(options, 'max-rows', 1) : undefined,
          parameters: { eep: { budget } },
          workspaceFolder: process.cwd(),
          onProgress: (message) => process.stderr.write(`${message}\n`),
        });
        if (options.has('json')) {
          console.log(JSON.stringify(result, null, 2));
          return;
        }
        console.log(`${result.metric} (full model ${result.baseline.toFixed(4)})`);
        console.log(`${'method'.padEnd(10)} ${result.counts.map((c) => String(c).padStart(8)).join(' ')}`);
        for (const { method, values } of result.series) console.log(`${method.padEnd(10)} ${values.map((v) => v.toFixed(4).padStart(8)).join(' ')}`);
      } finally {
        await sharedRuntimes.close();
      }
    },
  },
  export: {
    usage: 'moe-studio export --plan FILE --out DIR [--format huggingface|onnx] [--overwrite] [--shard-size 5GB]',
    description: 'Write the model a plan describes: a Hugging Face folder, or one ONNX file (--out ends in .onnx).',
    async run({ options }) {
      const format = options.get('format') ?? 'huggingface';
      if (format !== 'huggingface' && format !== 'onnx') throw new UsageError(`--format is huggingface or onnx, not ${String(format)}`);
      const shardSize = options.get('shard-size');
      const shardBytes = typeof shardSize === 'string' ? parseByteSize(shardSize) : undefined;
      if (shardSize !== undefined && shardBytes === undefined) throw new UsageError(`--shard-size ${String(shardSize)} is not a size like 5GB or 500MB`);
      const plan = path.resolve(requiredOption(options, 'plan', 'FILE'));
      const target = path.resolve(requiredOption(options, 'out', 'DIR'));
      // Ctrl-C cancels: the partial export is removed instead of left behind.
      const controller = new AbortController();
      const cancel = () => controller.abort();
      process.once('SIGINT', cancel);
      const started = Date.now();
      let reported = 0;
      try {
        const result = await exportPlanFile(plan, {
          format,
          target,
          overwrite: options.has('overwrite'),
          shardBytes,
          signal: controller.signal,
          onProgress: (progress) => {
            const now = Date.now();
            if (progress.phase === 'weights' && progress.bytesWritten < progress.bytesTotal && now - reported < 1000) return;
            reported = now;
            process.stderr.write(`${progressMessage(progress, now - started)}\n`);
          },
        });
        console.log(`Exported ${result.target}`);
        for (const file of result.files) console.log(`  ${file.path}  ${file.bytes} bytes  sha256 ${file.sha256}`);
      } finally {
        process.off('SIGINT', cancel);
      }
    },
  },
  summarize: {
    usage: 'moe-studio summarize FILE [--json]',
    description: 'Rows, bytes and malformed rows of a dataset (JSONL, JSON, CSV, Parquet, text).',
    async run({ positional, options }) {
      const file = required(positional[0], 'FILE');
      const summary = await summarizeDataset(path.resolve(file));
      if (options.has('json')) {
        console.log(JSON.stringify(summary, null, 2));
        return;
      }
      console.log(`${summary.fileName}: ${summary.format}, ${summary.rows} rows, ${summary.bytes} bytes`);
      if (summary.malformedRows > 0) {
        console.log(`${summary.malformedRows} malformed rows (first at lines ${summary.firstMalformedLines.join(', ')})`);
      }
    },
  },
};

export function parseArgs(argv: string[]): ParsedArgs {
  const positional: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const [name, inline] = arg.slice(2).split('=', 2);
    if (inline !== undefined) options.set(name, inline);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) options.set(name, argv[++i]);
    else options.set(name, true);
  }
  return { positional, options };
}

function required(value: string | undefined, name: string): string {
  if (!value) throw new UsageError(`missing ${name}`);
  return value;
}

function requiredOption(options: Map<string, string | true>, name: string, placeholder: string): string {
  const value = options.get(name);
  if (typeof value !== 'string') throw new UsageError(`missing --${name} ${placeholder}`);
  return value;
}

function integerOption(options: Map<string, string | true>, name: string, min: number): number {
  const value = Number(options.get(name));
  if (!(Number.isInteger(value) && value >= min)) throw new UsageError(`--${name} must be an integer ≥ ${min}`);
  return value;
}

/** `--field text`, `--field prompt+completion` (joined with ""), or the whole row when absent. */
function fieldOption(value: string | true | undefined): FieldSpec {
  if (value === undefined) return { kind: 'field', field: 'text' };
  if (value === true) throw new UsageError('--field needs a NAME (or A+B)');
  const parts = value.split('+');
  if (parts.length === 2 && parts.every((part) => part !== '')) return { kind: 'pair', fields: [parts[0], parts[1]], separator: parts[0] === 'question' ? '\n' : '' };
  return { kind: 'field', field: value };
}

const PLAN_METHODS: PlanMethodName[] = ['random', 'frequency', 'softCount', 'reap', 'naee', 'uncurl', 'eep'];

function methodOption(value: string): PlanMethodName {
  if (!(PLAN_METHODS as string[]).includes(value)) throw new UsageError(`unknown method "${value}" (one of ${PLAN_METHODS.join(', ')})`);
  return value as PlanMethodName;
}

/** `--data a.jsonl,b.jsonl`: a comma-separated list, at least one entry. */
function listOption(options: Map<string, string | true>, name: string): string[] {
  return requiredOption(options, name, 'A[,B]').split(',').map((item) => item.trim()).filter((item) => item !== '');
}

class UsageError extends Error {}

function help(): string {
  const lines = ['Usage: moe-studio <command> [options]', '', 'Commands:'];
  for (const [name, command] of Object.entries(commands)) lines.push(`  ${name.padEnd(12)} ${command.description}`, `               ${command.usage}`);
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return 0;
  }
  if (name === '--version') {
    console.log('0.1.0');
    return 0;
  }
  const command = commands[name];
  if (!command) {
    console.error(`moe-studio: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  try {
    await command.run(parseArgs(rest));
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`moe-studio ${name}: ${error.message}\nUsage: ${command.usage}`);
      return 2;
    }
    console.error(isUserError(error) ? `moe-studio ${name}: ${errorMessage(error)}` : (error as Error).stack ?? String(error));
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
