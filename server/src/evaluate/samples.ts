/**
 * Held-out and calibration data as the evaluator consumes it: tokenised once, the way the model was
 * trained (the tokenizer's own BOS, e.g. Mixtral's `<s>`; no EOS). A dataset is either text, scored by
 * next-token loss, or multiple choice (`{prompt, choices, label}` rows), scored by the log-likelihood of
 * each choice given the prompt.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TextTokenizer } from '../checkpoint/modelSpec';
import { datasetFormatOf } from '../datasets/format';
import { readRecords } from '../datasets/records';
import type { ChatTemplate } from '../profile/chatTemplate';
import { UserError } from '../errors';
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

/** Reads and tokenises a dataset. Multiple-choice files are recognised by their first readable row. */
export async function loadSamples(file: string, tokenizer: TextTokenizer, options: SampleOptions = {}): Promise<LoadedSamples> {
  const resolved = path.resolve(file);
  let bytes: Buffer;
  try {
    bytes = await fs.promises.readFile(resolved);
  } catch (error) {
    throw new UserError(`The dataset ${resolved} does not exist or cannot be read (${(error as Error).message}).`);
  }
  const values: { line: number; value: unknown }[] = [];
  for await (const record of readRecords(resolved, datasetFormatOf(resolved))) {
    if (record.error !== undefined) continue;
    values.push({ line: record.line, value: record.value });
    if (options.maxRows && values.length >= options.maxRows) break;
  }
  if (values.length === 0) throw new UserError(`${path.basename(resolved)} has no readable rows.`);
  const contentSha256 = createHash('sha256').update(bytes).digest('hex');
  const sequenceLength = options.sequenceLength ?? DEFAULT_SEQUENCE_LENGTH;

  if (!options.field && isChoiceRow(values[0].value)) {
    const items: ChoiceItem[] = values.filter((v) => isChoiceRow(v.value)).map(({ value }) => {
      const row = value as ChoiceRow;
      const start = tokenizer.encode(row.prompt).length;
      return { label: row.label, choices: row.choices.map((choice) => ({ ids: Int32Array.from(tokenizer.encode(row.prompt + choice)), start })) };
    });
    return { file: resolved, contentSha256, samples: { kind: 'choice', items }, rows: items.length, truncated: 0 };
  }

  const field = options.field ?? detectField(values.map((v) => v.value), resolved);
  const sequences: Int32Array[] = [];
  let truncated = 0;
  for (const { line, value } of values) {
    let text: string;
    try {
      text = rowText(value, field, line, options.chat);
    } catch {
      continue;
    }
    if (text.trim() === '') continue;
    const ids = tokenizer.encode(text);
    if (ids.length > sequenceLength) truncated++;
    // A lone BOS predicts nothing: such a row has no counted token.
    if (ids.length >= 2) sequences.push(Int32Array.from(ids.slice(0, sequenceLength)));
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
