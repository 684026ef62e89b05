/**
 * tokenizer.json (+ tokenizer_config.json) -> TextTokenizer, through @huggingface/tokenizers, the
 * pure-JS port of HF tokenizers, so ids match what transformers would produce.
 */

import { Tokenizer } from '@huggingface/tokenizers';
import { join } from 'node:path';
import { parseBoundedJson } from '../boundedJson';
import { MAX_METADATA_BYTES, readRegularFile } from '../regularFile';
import { quoteValue } from '../errors';
import { CheckpointError } from './errors';
import { findCatastrophicPattern } from './tokenizerPatterns';
import type { TextTokenizer } from './modelSpec';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

async function readJsonObject(path: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = (await readRegularFile(path, MAX_METADATA_BYTES)).toString('utf8');
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
    value = parseBoundedJson(text);
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
  const catastrophic = findCatastrophicPattern(tokenizerJson);
  if (catastrophic !== undefined) {
    throw new CheckpointError(
      'invalidTokenizer',
      `${tokenizerPath} has the pattern ${quoteValue(catastrophic)}, whose nested repetition can take exponential time on ordinary text; MoE Studio does not run it.`,
      tokenizerPath,
    );
  }
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
   * one written in the text gets its own; a space the tokenizer prepends (Metaspace) is passed over.
   *
   * Decoding whole prefixes is quadratic (2 s for 4096 tokens), so the prefix is decoded from an
   * anchor instead: a token at which everything decoded so far was attributed and which decodes to
   * whole characters on its own. Decoders treat only the start of a call specially (Metaspace strips
   * a leading space, WordPiece and Strip likewise), so decoding [anchor, …, k] gives the anchor's own
   * text followed by exactly what the whole prefix adds after it; when a decoding does not start with
   * the anchor's text, the whole prefix is decoded instead. The anchor moves forward every
   * `ANCHOR_SPAN` tokens, so the cost is linear in the token count.
   */
  encodeWithOffsets(text: string): { ids: number[]; offsets: [number, number][] } {
    const ids = this.encode(text);
    const offsets: [number, number][] = [];
    let cursor = 0;
    /** Characters of the decoded prefix attributed to tokens so far. */
    let attributed = 0;
    /** The anchor token, its own text, and `attributed` when it was set (the decoded prefix's length then). */
    let anchor: { index: number; text: string; base: number } | undefined;
    for (let k = 0; k < ids.length; k++) {
      let piece: string | undefined;
      if (anchor) {
        const window = this.decode(ids.slice(anchor.index, k + 1));
        if (window.startsWith(anchor.text)) piece = window.slice(anchor.text.length + attributed - anchor.base);
        else anchor = undefined;
      }
      piece ??= this.decode(ids.slice(0, k + 1)).slice(attributed);
      // Metaspace tokenizers (Llama, Mixtral) prepend a space to the text, and after each special
      // token, that the input does not have: "<s> The" decodes from "The".
      const lead = piece.length > 1 && piece[0] === ' ' && text[cursor] !== ' ' ? 1 : 0;
      const matched = matchedLength(piece.slice(lead), text, cursor);
      offsets.push([cursor, cursor + matched]);
      cursor += matched;
      // Text that is nowhere in the input (an added special token) is skipped; a half character is
      // left for the next token to complete.
      const taken = matched > 0 ? lead + matched : piece.includes('\uFFFD') ? 0 : piece.length;
      attributed += taken;
      if (taken === piece.length && (!anchor || k - anchor.index >= ANCHOR_SPAN)) {
        const own = this.decode([ids[k]]);
        if (!own.includes('\uFFFD')) anchor = { index: k, text: own, base: attributed };
      }
    }
    return { ids, offsets };
  }
}

/** Tokens decoded per alignment step at most, give or take: the anchor moves after this many. */
const ANCHOR_SPAN = 16;

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
