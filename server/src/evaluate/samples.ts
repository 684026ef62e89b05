/**
 * Held-out and calibration data as the evaluator consumes it: tokenised once, the way the model was
 * trained (the tokenizer's own BOS, e.g. Mixtral's `<s>`; no EOS). A dataset is either text, scored by
 * next-token loss, or multiple choice (`{prompt, choices, label}` rows), scored by the log-likelihood of
 * each choice given the prompt.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TextTokenizer } from '../checkpoint/modelSpec';
import { inProcessRowTokenizer, type RowTokenizer, type TokenizedRow, type TokenizeRequest } from '../checkpoint/tokenizeRow';
import { datasetFormatOf } from '../datasets/format';
import { sandboxedRecords } from '../datasets/sandboxedRecords';
import type { ChatTemplate } from '../profile/chatTemplate';
import { fileSha256 } from '../profile/profileFile';
import { errorMessage, UserError } from '../errors';
import { detectTextField, fieldLabel, rowText } from '../profile/textField';
import type { FieldSpec } from '../profile/types';

/** One multiple-choice item: every choice as prompt + choice tokens, scored from `start` on. */
export interface ChoiceItem {
  label: number;
  choices: { ids: Int32Array; start: number }[];
}

export type EvaluationSamples =
  | { kind: 'text'; sequences: Int32Array[] }
  | { kind: 'choice'; items: ChoiceItem[] };

export interface LoadedSamples {
  file: string;
  /** SHA-256 of the file's bytes: with the settings, the key of cached baselines. */
  contentSha256: string;
  /** The text field used (text data only). */
  field?: FieldSpec;
  samples: EvaluationSamples;
  rows: number;
  /** Rows longer than the sequence length, cut to it. */
  truncated: number;
}

export interface SampleOptions {
  field?: FieldSpec;
  /** Read at most this many rows. */
  maxRows?: number;
  /** Tokens per text row (BOS included); longer rows are cut. Default 256, the demo's protocol. */
  sequenceLength?: number;
  /** The model's chat template, for chat rows (as profiling renders them). */
  chat?: ChatTemplate;
}

export const DEFAULT_SEQUENCE_LENGTH = 256;

interface ChoiceRow {
  prompt: string;
  choices: string[];
  label: number;
}

export function isChoiceRow(value: unknown): value is ChoiceRow {
  if (!value || typeof value !== 'object') return false;
  const row = value as Record<string, unknown>;
  return typeof row.prompt === 'string' && Array.isArray(row.choices) && row.choices.length > 0 && row.choices.every((c) => typeof c === 'string')
    && Number.isInteger(row.label) && (row.label as number) >= 0 && (row.label as number) < row.choices.length;
}

/** Rows per round trip to the tokenizer's worker. */
const TOKENIZE_CHUNK = 64;

/**
 * Reads and tokenises a dataset. Multiple-choice files are recognised by their first readable row.
 * The rows are read in the records sandbox and tokenised by `tokenizer` (the server's is sandboxed
 * too), so a hostile file or tokenizer costs a stopped worker and a message, never the thread.
 */
export async function loadSamples(file: string, tokenizer: RowTokenizer | TextTokenizer, options: SampleOptions = {}): Promise<LoadedSamples> {
  const resolved = path.resolve(file);
  const rowTokenizer = 'tokenizeRows' in tokenizer ? tokenizer : inProcessRowTokenizer(tokenizer);
  const name = path.basename(resolved);
  // A FIFO or a device named like a dataset would block the hash below forever.
  const stats = await fs.promises.stat(resolved).catch((error: unknown) => {
    throw new UserError(`The dataset ${resolved} does not exist or cannot be read (${errorMessage(error)}).`);
  });
  if (!stats.isFile()) throw new UserError(`The dataset ${resolved} is not a regular file (a folder, device or pipe).`);
  const values: { line: number; value: unknown }[] = [];
  for await (const record of sandboxedRecords(resolved, datasetFormatOf(resolved))) {
    if (record.error !== undefined) continue;
    values.push({ line: record.line, value: record.value });
    if (options.maxRows && values.length >= options.maxRows) break;
  }
  if (values.length === 0) throw new UserError(`${name} has no readable rows.`);
  const contentSha256 = await fileSha256(resolved);
  const sequenceLength = options.sequenceLength ?? DEFAULT_SEQUENCE_LENGTH;
  const tokenize = (requests: TokenizeRequest[]) => tokenizeInChunks(rowTokenizer, requests);

  if (!options.field && isChoiceRow(values[0].value)) {
    const rows = values.filter((v) => isChoiceRow(v.value)) as { line: number; value: ChoiceRow }[];
    const requests = rows.flatMap(({ line, value }) => [value.prompt, ...value.choices.map((choice) => value.prompt + choice)].map((text) => ({ text, where: `line ${line} of ${name}` })));
    const encoded = await tokenize(requests);
    let next = 0;
    const items: ChoiceItem[] = rows.map(({ value }) => {
      const start = encoded[next++].length;
      return { label: value.label, choices: value.choices.map(() => ({ ids: encoded[next++].ids, start })) };
    });
    return { file: resolved, contentSha256, samples: { kind: 'choice', items }, rows: items.length, truncated: 0 };
  }

  const field = options.field ?? detectField(values.map((v) => v.value), resolved);
  const requests: TokenizeRequest[] = [];
  for (const { line, value } of values) {
    let text: string;
    try {
      text = rowText(value, field, line, options.chat);
    } catch {
      continue;
    }
    if (text.trim() !== '') requests.push({ text, maxTokens: sequenceLength, where: `line ${line} of ${name}` });
  }
  const sequences: Int32Array[] = [];
  let truncated = 0;
  for (const { ids, length } of await tokenize(requests)) {
    if (length > sequenceLength) truncated++;
    // A lone BOS predicts nothing: such a row has no counted token.
    if (length >= 2) sequences.push(ids);
  }
  if (sequences.length === 0) throw new UserError(`${path.basename(resolved)}: no row has text in ${fieldLabel(field)}.`);
  return { file: resolved, contentSha256, field, samples: { kind: 'text', sequences }, rows: sequences.length, truncated };
}

function detectField(rows: unknown[], file: string): FieldSpec {
  const detection = detectTextField(rows.slice(0, 200));
  const best = detection.candidates[0];
  if (!best) throw new UserError(`${path.basename(file)}: no text field found; name one (e.g. "text").`);
  return best.spec;
}

async function tokenizeInChunks(tokenizer: RowTokenizer, requests: TokenizeRequest[]): Promise<TokenizedRow[]> {
  const rows: TokenizedRow[] = [];
  for (let start = 0; start < requests.length; start += TOKENIZE_CHUNK) rows.push(...(await tokenizer.tokenizeRows(requests.slice(start, start + TOKENIZE_CHUNK))));
  return rows;
}
