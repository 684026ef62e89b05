/**
 * `moe-studio`: the headless face of the same server code, for scripts and CI pipelines.
 * Each command is a small async function from parsed arguments to printed output.
 */
import * as path from 'node:path';
import { loadCheckpoint } from './checkpoint';
import { describeCheckpoint } from './checkpoint/describe';
import { summarizeDataset } from './datasets/summarize';
import { errorMessage, isUserError } from './errors';

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
