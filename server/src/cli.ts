/**
 * `moe-studio`: the headless face of the same server code, for scripts and CI pipelines.
 * Each command is a small async function from parsed arguments to printed output.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCheckpoint } from './checkpoint';
import { describeCheckpoint } from './checkpoint/describe';
import { summarizeDataset } from './datasets/summarize';
import { errorMessage, isUserError, UserError } from './errors';
import type { FieldSpec } from './profile';
import { profileDataset, profileProgressMessage, sharedRuntimes } from './profile/run';
import type { EvaluationMetric, PlanMethodName } from '../../common/protocol';
import { evaluatePlanFile } from './evaluate';
import { generatePlanFile, readPlanToResume, runSweep } from './plan/run';
import { ExportError, exportPlanFile, parseByteSize, progressMessage } from './export';
import { defaultMemoryBudget, formatBytes, MemoryBudgetError, planMemory, PRECISIONS, type MemoryPlan, type Precision } from './runtime';
import { overallLabel, ProgressLine } from './cli/progressLine';

interface Command {
  /** Every option the command takes appears here as `--name`: the usage line is also its option table. */
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
    usage: 'moe-studio info --model DIR [--memory-budget SIZE] [--json]',
    description: 'Load a model folder (validating every tensor) and describe it, with what it needs in memory per precision.',
    async run({ options }) {
      const budget = memoryBudgetOption(options);
      const checkpoint = await loadCheckpoint(path.resolve(requiredOption(options, 'model', 'DIR')));
      try {
        const summary = describeCheckpoint(checkpoint);
        const { tensors: _names, ...shape } = checkpoint.spec;
        const memory = Object.fromEntries(PRECISIONS.map((precision): [Precision, MemoryPlan | { error: string }] => {
          try {
            return [precision, planMemory(shape, { budgetBytes: budget, precision })];
          } catch (error) {
            if (error instanceof MemoryBudgetError) return [precision, { error: error.message }];
            throw error;
          }
        }));
        if (options.has('json')) {
          console.log(JSON.stringify({ ...summary, memory }, null, 2));
          return;
        }
        const millions = (n: number) => `${(n / 1e6).toFixed(2)} M`;
        console.log(`${summary.architecture} at ${summary.folder}`);
        console.log(`  routing: ${summary.routing}`);
        console.log(`  ${summary.layers} layers (${summary.moeLayers.length} MoE), ${summary.numExperts} experts, top-${summary.topK}, hidden ${summary.hiddenSize}, vocab ${summary.vocabSize}`);
        console.log(`  ${millions(summary.parameters)} parameters (${millions(summary.expertParameters)} in experts, ${millions(summary.activeParametersPerToken)} active per token), ${(summary.bytes / 2 ** 20).toFixed(1)} MiB`);
        console.log(`  dtypes: ${Object.entries(summary.dtypes).map(([dtype, count]) => `${dtype} × ${count}`).join(', ')}`);
        console.log(`  memory budget ${formatBytes(budget ?? defaultMemoryBudget())}${budget === undefined ? ' (the default: half the RAM minus 1 GB, at least 2 GB)' : ''}:`);
        for (const [precision, plan] of Object.entries(memory)) console.log(`    ${precision}: ${'error' in plan ? plan.error : plan.summary}`);
      } finally {
        await checkpoint.weights.close();
      }
    },
  },
  profile: {
    usage: 'moe-studio profile --model DIR --data FILE [--field NAME|--field A+B] [--out FILE] [--seq-len N] [--max-rows N] [--token-records N] [--threads N] [--force] [--memory-budget SIZE] [--precision fp32|int8]',
    description: 'Profile expert usage on a dataset; writes a profile file and prints a per-layer summary.',
    async run({ options }) {
      configureRuntimes(options);
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
          onProgress: (progress) => process.stderr.write(`\r${profileProgressMessage(progress)}   `),
          onEstimate: ({ summary }) => process.stderr.write(`Profiling: ${summary} (Ctrl-C cancels)\n`),
        });
        process.stderr.write(result.reused ? 'Reused the saved profile (same model, data, field and settings; --force recomputes).\n' : `\rDone in ${((Date.now() - started) / 1000).toFixed(1)} s.${' '.repeat(30)}\n`);
        const { profile } = result;
        const thresholdIndex = (t: number) => profile.gatingThresholds.findIndex((value) => Math.abs(value - t) < 1e-9);
        const [at01, at02] = [thresholdIndex(0.1), thresholdIndex(0.2)];
        const percent = (share: number) => `${(100 * share).toFixed(1)}%`;
        console.log(`${profile.dataset.rows} rows, ${profile.dataset.tokens} tokens; ${profile.model.architecture}, ${profile.model.numExperts} experts, top-${profile.model.topK}`);
        // Entropy as the dashboard plots it: divided by ln E, so 1 is uniform routing whatever E is.
        console.log(`layer  top experts (usage share)        entropy/ln E  single-expert share T=0.1  T=0.2`);
        for (const layer of profile.layers) {
          const top = [...layer.usageShare.keys()].sort((a, b) => layer.usageShare[b] - layer.usageShare[a]).slice(0, 3);
          const experts = top.map((expert) => `${expert} (${percent(layer.usageShare[expert])})`).join(', ');
          const single = (index: number) => (index >= 0 ? percent(layer.singleExpertShare[index]) : 'n/a');
          console.log(`${String(layer.layer).padStart(5)}  ${experts.padEnd(32)} ${(layer.meanEntropy / Math.log(profile.model.numExperts)).toFixed(3).padStart(13)}  ${single(at01).padStart(25)}  ${single(at02).padStart(5)}`);
        }
        for (const note of result.notes) console.log(`note: ${note}`);
        console.log(result.profilePath);
      } finally {
        await sharedRuntimes.close();
      }
    },
  },
  plan: {
    usage: 'moe-studio plan --model DIR --method NAME --keep N|--keep-share X --calibration FILE[,FILE] [--field F] [--seed S] [--budget N] [--similarity cosine|correlation] [--no-neuron-alignment] [--repair routerRefit,outputCompensation] [--resume FILE.moeplan.json] [--profile FILE] [--share X] [--max-loss-increase NATS] [--threads N] --out FILE.moeplan.json [--memory-budget SIZE] [--precision fp32|int8]',
    description: 'Make a plan (random, frequency, softCount, reap, naee, uncurl, eep; or adaptiveGating with --share or --max-loss-increase and no --keep) from calibration data; never overwrites --out.',
    async run({ options }) {
      configureRuntimes(options);
      const requested = requiredOption(options, 'method', 'NAME');
      const method = requested === 'adaptiveGating' ? requested : methodOption(requested);
      const field = options.has('field') ? fieldOption(options.get('field')) : undefined;
      const progress = new ProgressLine();
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
            // UNCURL and EEP merge unaligned (neuron k with neuron k) instead of aligning neurons first.
            ...(options.has('no-neuron-alignment') && { neuronAlignment: false }),
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
          onProgress: (message, eep) => progress.update(eep ? { label: 'EEP search', done: eep.evaluations, total: options.has('budget') ? Number(options.get('budget')) : undefined, unit: `evaluations (${message})` } : { label: message }),
        });
        progress.finish();
        for (const layer of plan.layers) console.log(`layer ${layer.layer}: keeps ${layer.keptExperts.join(', ')}${layer.mergeMatrix ? ` (merged${layer.neuronOrder ? ', neurons aligned' : ''})` : ''}${layer.outputScale ? ` (output scales ${layer.outputScale.map((s) => s.toFixed(3)).join(', ')})` : ''}${layer.adaptiveThreshold !== undefined ? `, adaptive gating T = ${layer.adaptiveThreshold.toFixed(3)}` : ''}`);
        console.log(planPath);
        for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
      } finally {
        progress.finish();
        await sharedRuntimes.close();
      }
    },
  },
  evaluate: {
    usage: 'moe-studio evaluate --plan FILE --data FILE[,FILE] [--field F] [--max-rows N] [--threads N] [--json] [--memory-budget SIZE] [--precision fp32|int8]',
    description: 'Measure a plan against the full model (loss, perplexity, KL, top-1 agreement; accuracy on multiple-choice data) and record the results in the plan.',
    async run({ options }) {
      configureRuntimes(options);
      const field = options.has('field') ? fieldOption(options.get('field')) : undefined;
      const planFile = path.resolve(requiredOption(options, 'plan', 'FILE'));
      const progress = new ProgressLine();
      try {
        const result = await evaluatePlanFile({
          plan: planFile,
          datasets: listOption(options, 'data').map((file) => ({ file: path.resolve(file), field })),
          maxRows: options.has('max-rows') ? integerOption(options, 'max-rows', 1) : undefined,
          workspaceFolder: process.cwd(),
          threads: options.has('threads') ? integerOption(options, 'threads', 0) : 0,
          onProgress: ({ message, done, total }) => progress.update({ label: message, done, total, unit: 'sequences' }),
        });
        progress.finish();
        // As the extension does: the results travel with the plan (and its model card on export).
        await writeFileAtomically(planFile, result.updatedPlanText);
        if (options.has('json')) {
          console.log(JSON.stringify(result.evaluations, null, 2));
          return;
        }
        console.log('dataset                         metric          full model        plan');
        for (const e of result.evaluations) console.log(`${e.dataset.padEnd(31)} ${e.metric.padEnd(14)} ${(e.baseline ?? NaN).toFixed(4).padStart(11)} ${e.value.toFixed(4).padStart(11)}`);
        console.log(`Recorded in ${path.relative(process.cwd(), planFile) || planFile}`);
      } finally {
        progress.finish();
        await sharedRuntimes.close();
      }
    },
  },
  sweep: {
    usage: 'moe-studio sweep --model DIR --methods a,b --calibration FILE[,FILE] --data FILE [--metric M] [--counts 8,7,…] [--seed S] [--max-rows N] [--budget N] [--json] [--memory-budget SIZE] [--precision fp32|int8]',
    description: 'Quality against experts kept, for several methods side by side on held-out data.',
    async run({ options }) {
      configureRuntimes(options);
      const field = options.has('field') ? fieldOption(options.get('field')) : undefined;
      const budget = options.has('budget') ? integerOption(options, 'budget', 1) : 100;
      const progress = new ProgressLine();
      const started = Date.now();
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
          onProgress: (message, fraction) => progress.update({ label: overallLabel(message, fraction, Date.now() - started, 'sweep') }),
        });
        progress.finish();
        if (options.has('json')) {
          console.log(JSON.stringify(result, null, 2));
          return;
        }
        console.log(`${result.metric} (full model ${result.baseline.toFixed(4)})`);
        console.log(`${'method'.padEnd(10)} ${result.counts.map((c) => String(c).padStart(8)).join(' ')}`);
        for (const { method, values } of result.series) console.log(`${method.padEnd(10)} ${values.map((v) => v.toFixed(4).padStart(8)).join(' ')}`);
      } finally {
        progress.finish();
        await sharedRuntimes.close();
      }
    },
  },
  export: {
    usage: 'moe-studio export --plan FILE --out DIR|FILE.onnx [--format huggingface|onnx] [--overwrite] [--shard-size 5GB]',
    description: 'Write the model a plan describes: a Hugging Face folder, or one ONNX file (--out ends in .onnx, or --format onnx).',
    async run({ options }) {
      const plan = path.resolve(requiredOption(options, 'plan', 'FILE'));
      const target = path.resolve(requiredOption(options, 'out', 'DIR|FILE.onnx'));
      const format = exportFormatOption(options.get('format'), target);
      const shardSize = options.get('shard-size');
      const shardBytes = typeof shardSize === 'string' ? parseByteSize(shardSize) : undefined;
      if (shardSize !== undefined && shardBytes === undefined) throw new UsageError(`--shard-size ${String(shardSize)} is not a size like 5GB or 500MB`);
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
        for (const stale of result.staleRemoved) console.log(`Removed ${stale}, left by an earlier export that was killed.`);
        console.log(`Exported ${result.target} (${result.files.length} ${result.files.length === 1 ? 'file' : 'files'})`);
        for (const file of result.files) console.log(`  ${file.path}  ${file.bytes} bytes  sha256 ${file.sha256}`);
      } catch (error) {
        if (error instanceof ExportError && error.code === 'targetExists') throw new UserError(`${error.message.replace(/ Choose another .*$/, '')} Choose another --out, or pass --overwrite to replace it.`);
        throw error;
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

/** `--memory-budget 6GB` (or 6000MB, 5.5GiB); undefined when absent (the default from the machine's RAM). */
function memoryBudgetOption(options: Map<string, string | true>): number | undefined {
  const value = options.get('memory-budget');
  if (value === undefined) return undefined;
  const bytes = typeof value === 'string' ? parseByteSize(value) : undefined;
  if (bytes === undefined) throw new UsageError(`--memory-budget ${value === true ? 'needs a SIZE' : `${value} is not a size`} like 6GB or 6000MB`);
  return bytes;
}

/** The runtime options of the commands that run a model; each opened model's memory decision goes to stderr. */
function configureRuntimes(options: Map<string, string | true>): void {
  const precision = options.get('precision') ?? 'fp32';
  if (!(PRECISIONS as unknown[]).includes(precision)) throw new UsageError(`--precision is ${PRECISIONS.join(' or ')}, not ${String(precision)}`);
  sharedRuntimes.configure({ memoryBudget: memoryBudgetOption(options), precision: precision as Precision, report: (line) => process.stderr.write(`${line}\n`) });
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

/** The format asked for, or the one `--out`'s ending names (`.onnx`); a contradiction is refused before any work. */
function exportFormatOption(value: string | true | undefined, target: string): 'huggingface' | 'onnx' {
  const named = target.toLowerCase().endsWith('.onnx') ? 'onnx' : undefined;
  if (value === undefined) return named ?? 'huggingface';
  if (value !== 'huggingface' && value !== 'onnx') throw new UsageError(`--format is huggingface or onnx, not ${String(value)}`);
  if (value === 'huggingface' && named) throw new UsageError(`--out ${path.basename(target)} ends in .onnx but --format is huggingface (a folder); name a folder, or use --format onnx`);
  return value;
}

/** Written beside the file and renamed over it, so an interrupted write leaves the old plan whole. */
async function writeFileAtomically(file: string, text: string): Promise<void> {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    await fs.promises.writeFile(temporary, text);
    await fs.promises.rename(temporary, file);
  } catch (error) {
    await fs.promises.rm(temporary, { force: true });
    throw error;
  }
}

class UsageError extends Error {}

/** The `--name`s a command's usage line lists (its option table), with `--help`. */
export function commandOptions(command: Command): string[] {
  return [...new Set([...command.usage.matchAll(/--([a-z][a-z0-9-]*)/g)].map((match) => match[1]))];
}

/** Refuses an option the command does not take, before any work: a mistyped flag must not run a long job with defaults. */
function checkOptions(command: Command, args: ParsedArgs): void {
  const known = new Set(commandOptions(command));
  const unknown = [...args.options.keys()].filter((name) => !known.has(name));
  if (unknown.length > 0) throw new UsageError(`unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((name) => `--${name}`).join(', ')}; this command takes ${commandOptions(command).map((name) => `--${name}`).join(', ')}`);
}

function help(): string {
  const lines = ['Usage: moe-studio <command> [options]   (moe-studio <command> --help for one command)', '', 'Commands:'];
  for (const [name, command] of Object.entries(commands)) lines.push(`  ${name.padEnd(12)} ${command.description}`, `               ${command.usage}`);
  return lines.join('\n');
}

function commandHelp(command: Command): string {
  return [`Usage: ${command.usage}`, '', command.description].join('\n');
}

const HELP_FLAGS = ['--help', '-h'];

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === 'help' && rest[0] && Object.hasOwn(commands, rest[0])) {
    console.log(commandHelp(commands[rest[0]]));
    return 0;
  }
  if (!name || HELP_FLAGS.includes(name) || name === 'help') {
    console.log(help());
    return 0;
  }
  if (name === '--version') {
    console.log('0.1.0');
    return 0;
  }
  // Own properties only: "constructor" or "__proto__" is not a command.
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    console.error(`moe-studio: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  if (rest.some((arg) => HELP_FLAGS.includes(arg))) {
    console.log(commandHelp(command));
    return 0;
  }
  try {
    const args = parseArgs(rest);
    checkOptions(command, args);
    await command.run(args);
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
