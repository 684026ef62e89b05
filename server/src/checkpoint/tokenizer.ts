/**
 * tokenizer.json (+ tokenizer_config.json) -> TextTokenizer, through @huggingface/tokenizers, the
 * pure-JS port of HF tokenizers, so ids match what transformers would produce.
 */

import { Tokenizer } from '@huggingface/tokenizers';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointError } from './errors';
import type { TextTokenizer } from './modelSpec';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

async function readJsonObject(path: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CheckpointError(
      missing ? 'notFound' : 'invalidTokenizer',
      missing
        ? `${path} is missing. MoE Studio needs the fast-tokenizer file tokenizer.json next to config.json ` +
            `(save it with AutoTokenizer.from_pretrained(...).save_pretrained(folder)).`
        : `Cannot read ${path}: ${(error as Error).message}`,
      path,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new CheckpointError('invalidTokenizer', `${path} is not valid JSON (${(error as Error).message}).`, path);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CheckpointError('invalidTokenizer', `${path} is not a JSON object.`, path);
  }
  return value as Record<string, unknown>;
}

/** `bos_token` in tokenizer_config.json is either the token text or an AddedToken object. */
function specialTokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

/** config.json's eos_token_id may be a list (Qwen chat models); the first is the canonical one. */
function firstId(value: unknown): number | undefined {
  const id = Array.isArray(value) ? value[0] : value;
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 ? id : undefined;
}

export async function loadTokenizer(folder: string, modelConfig: Record<string, unknown> = {}): Promise<TextTokenizer> {
  const tokenizerPath = join(folder, TOKENIZER_FILE);
  const tokenizerJson = (await readJsonObject(tokenizerPath, true)) as Record<string, unknown>;
  const tokenizerConfig = (await readJsonObject(join(folder, TOKENIZER_CONFIG_FILE), false)) ?? {};
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
  } catch (error) {
    throw new CheckpointError('invalidTokenizer', `${tokenizerPath} could not be loaded: ${(error as Error).message}`, tokenizerPath);
  }
  const idOf = (token: unknown) => {
    const text = specialTokenText(token);
    return text === undefined ? undefined : tokenizer.token_to_id(text);
  };
  return new HfTextTokenizer(
    tokenizer,
    idOf(tokenizerConfig.bos_token) ?? firstId(modelConfig.bos_token_id),
    idOf(tokenizerConfig.eos_token) ?? firstId(modelConfig.eos_token_id),
  );
}

class HfTextTokenizer implements TextTokenizer {
  constructor(
    private readonly tokenizer: Tokenizer,
    readonly bosTokenId: number | undefined,
    readonly eosTokenId: number | undefined,
  ) {}

  /** With the tokenizer's own special tokens (e.g. Mixtral's `<s>`), as transformers does by default. */
  encode(text: string): number[] {
    return this.tokenizer.encode(text).ids;
  }

  decode(ids: number[]): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  /**
   * @huggingface/tokenizers returns no offsets, so they are derived by alignment. For each k the
   * prefix [0, k] is decoded (prefixes, not single tokens: byte-level tokens that split a UTF-8
   * character and Metaspace's dropped leading space only resolve in context); the part not yet
   * attributed is token k's text, and the span is however much of it matches the input at the cursor.
   * So a token that completes no character (decoding to U+FFFD) gets an empty span and the token that
   * completes it gets the character; a special token the tokenizer added (bos) gets an empty span,
   * one written in the text gets its own. Quadratic in the token count, fine for prompt-sized views.
   */
  encodeWithOffsets(text: string): { ids: number[]; offsets: [number, number][] } {
    const ids = this.encode(text);
    const offsets: [number, number][] = [];
    let cursor = 0;
    let attributed = 0;
    for (let k = 0; k < ids.length; k++) {
      const piece = this.decode(ids.slice(0, k + 1)).slice(attributed);
      const matched = matchedLength(piece, text, cursor);
      offsets.push([cursor, cursor + matched]);
      cursor += matched;
      // Text that is nowhere in the input (an added special token) is skipped; a half character is
      // left for the next token to complete.
      attributed += matched > 0 || piece.includes('\uFFFD') ? matched : piece.length;
    }
    return { ids, offsets };
  }
}

/**
 * How many characters of `piece` agree with `text` from `start`. Case is ignored because lowercasing
 * normalisers make the decoded text differ from the input only in case. A surrogate pair (an emoji)
 * is never split between tokens.
 */
function matchedLength(piece: string, text: string, start: number): number {
  const limit = Math.min(piece.length, text.length - start);
  let i = 0;
  while (i < limit && (piece[i] === text[start + i] || piece[i].toLowerCase() === text[start + i].toLowerCase())) i++;
  if (i > 0 && start + i < text.length && isHighSurrogate(text.charCodeAt(start + i - 1))) i--;
  return i;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
