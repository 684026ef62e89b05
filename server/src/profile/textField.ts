/**
 * Which part of a dataset row is the text to profile. Detection looks at the first rows and
 * returns ranked candidates with a confidence, so the client can ask (a quick pick) when unsure.
 */
import { UserError, errorMessage, isUserError } from '../errors';
import type { ChatMessage, ChatTemplate } from './chatTemplate';
import type { FieldSpec } from './types';

export interface FieldCandidate {
  spec: FieldSpec;
  /** For the quick pick, e.g. "prompt + completion". */
  label: string;
  /** In [0, 1]: share of the sampled rows it fits, lowered for fields found by shape rather than by name. */
  confidence: number;
}

export interface FieldDetection {
  /** Best first; empty when no row has any text. */
  candidates: FieldCandidate[];
  /** True when the best candidate is clear enough to use without asking. */
  confident: boolean;
}

/** Field names that mean "the text" by convention (Hugging Face datasets, instruction sets). */
const NAMED_FIELDS = ['text', 'content'];
const NAMED_PAIRS: { fields: [string, string]; separator: string }[] = [
  { fields: ['prompt', 'completion'], separator: '' },
  { fields: ['question', 'answer'], separator: '\n' },
];
const CHAT_FIELDS = ['messages', 'conversations'];

/** At or above this, a candidate found by name is used without asking (unless a rival also is). */
const CONFIDENT = 0.9;
/** Fields that merely hold strings are plausible but never certain. */
const UNNAMED_WEIGHT = 0.5;

export function fieldLabel(spec: FieldSpec): string {
  switch (spec.kind) {
    case 'string':
      return 'the whole row';
    case 'field':
      return spec.field;
    case 'pair':
      return `${spec.fields[0]} + ${spec.fields[1]}`;
    case 'chat':
      return `${spec.field} (chat)`;
  }
}

/** Ranks the ways to read text from rows such as `sample` (the first rows of a dataset, parsed). */
export function detectTextField(sample: readonly unknown[]): FieldDetection {
  const rows = sample.filter((row) => row !== undefined && row !== null);
  if (rows.length === 0) return { candidates: [], confident: false };
  const coverage = (spec: FieldSpec) => rows.filter((row) => (textOf(row, spec) ?? '').trim() !== '').length / rows.length;

  const candidates: FieldCandidate[] = [];
  const consider = (spec: FieldSpec, weight: number) => {
    const confidence = coverage(spec) * weight;
    if (confidence > 0) candidates.push({ spec, label: fieldLabel(spec), confidence });
  };
  consider({ kind: 'string' }, 1);
  const keys = [...new Set(rows.flatMap((row) => (isRecord(row) ? Object.keys(row) : [])))];
  for (const field of NAMED_FIELDS) consider({ kind: 'field', field }, 1);
  for (const { fields, separator } of NAMED_PAIRS) consider({ kind: 'pair', fields, separator }, 1);
  for (const field of CHAT_FIELDS) consider({ kind: 'chat', field }, 1);
  for (const field of keys) {
    if (NAMED_FIELDS.includes(field)) continue;
    if (CHAT_FIELDS.includes(field)) continue;
    consider({ kind: 'field', field }, UNNAMED_WEIGHT);
    consider({ kind: 'chat', field }, UNNAMED_WEIGHT);
  }
  // Longer texts first among equals: a `title` is less likely the text than a `body`.
  const meanLength = (spec: FieldSpec) => rows.reduce((sum: number, row) => sum + (textOf(row, spec)?.length ?? 0), 0) / rows.length;
  candidates.sort((a, b) => b.confidence - a.confidence || meanLength(b.spec) - meanLength(a.spec));
  const confident = candidates.length > 0 && candidates[0].confidence >= CONFIDENT && !(candidates[1]?.confidence >= CONFIDENT);
  return { candidates, confident };
}

/**
 * The text to tokenise from one row (possibly empty: the caller skips rows with no tokens). Throws a UserError naming the row and the fields it does
 * have when the spec does not fit. `line` is the row's line (or index + 1) for messages.
 */
export function rowText(row: unknown, spec: FieldSpec, line: number, chat?: ChatTemplate): string {
  let text: string | undefined;
  try {
    text = textOf(row, spec, chat);
  } catch (error) {
    if (isUserError(error)) fail(`line ${line}: ${errorMessage(error)}`);
    throw error;
  }
  if (text !== undefined) return text;
  const where = `line ${line}`;
  if (spec.kind === 'string') return fail(`${where}: expected a string row, found ${describe(row)}`);
  if (!isRecord(row)) return fail(`${where}: expected an object with ${fieldLabel(spec)}, found ${describe(row)}`);
  const has = Object.keys(row);
  const fields = has.length > 0 ? `its fields are ${has.map((name) => JSON.stringify(name)).join(', ')}` : 'it has no fields';
  const wanted = spec.kind === 'pair' ? spec.fields : [spec.field];
  const missing = wanted.filter((name) => !(name in row));
  if (missing.length > 0) return fail(`${where}: no field ${missing.map((name) => JSON.stringify(name)).join(' or ')}; ${fields}`);
  if (spec.kind === 'chat') return fail(`${where}: "${spec.field}" is not a list of {role, content} messages (${describe(row[spec.field])})`);
  const wrong = wanted.find((name) => typeof row[name] !== 'string') ?? wanted[0];
  return fail(`${where}: field "${wrong}" is ${describe(row[wrong])}, not text`);
}

/** The text of `row` under `spec`, or undefined when the spec does not fit the row. */
function textOf(row: unknown, spec: FieldSpec, chat?: ChatTemplate): string | undefined {
  switch (spec.kind) {
    case 'string':
      return typeof row === 'string' ? row : undefined;
    case 'field': {
      const value = isRecord(row) ? row[spec.field] : undefined;
      return typeof value === 'string' ? value : undefined;
    }
    case 'pair': {
      if (!isRecord(row)) return undefined;
      const [first, second] = spec.fields.map((name) => row[name]);
      return typeof first === 'string' && typeof second === 'string' ? first + spec.separator + second : undefined;
    }
    case 'chat':
      return isRecord(row) ? chatText(row[spec.field], chat) : undefined;
  }
}

/** ShareGPT's speaker names, as chat templates expect roles. */
const SHAREGPT_ROLES: Record<string, string> = { human: 'user', gpt: 'assistant', system: 'system' };

/**
 * The conversation through the model's chat template when it has one, else `<|role|>\ncontent\n`
 * per message; accepts {role, content} and ShareGPT's {from, value}.
 */
function chatText(messages: unknown, chat?: ChatTemplate): string | undefined {
  if (!Array.isArray(messages)) return undefined;
  const conversation: (ChatMessage & { speaker: string })[] = [];
  for (const message of messages) {
    if (!isRecord(message)) return undefined;
    const speaker = message.role ?? message.from;
    const content = message.content ?? message.value;
    if (typeof speaker !== 'string' || typeof content !== 'string') return undefined;
    const role = message.role === undefined && Object.hasOwn(SHAREGPT_ROLES, speaker) ? SHAREGPT_ROLES[speaker] : speaker;
    conversation.push({ role, content, speaker });
  }
  if (chat) return chat.render(conversation.map(({ role, content }) => ({ role, content })));
  return conversation.map(({ speaker, content }) => `<|${speaker}|>\n${content}\n`).join('');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

function fail(message: string): never {
  throw new UserError(message);
}
