/**
 * What the pipeline asks of a tokenizer for one dataset row, in one call so it can run wherever the
 * tokenizer runs (the tokenizer worker, or in process for tests): the row's ids cut to the sequence
 * length, its full length (to count truncated rows), and the character spans of its first tokens.
 */
import type { TextTokenizer } from './modelSpec';

export interface TokenizeRequest {
  text: string;
  /** Keep at most this many ids; default all. */
  maxTokens?: number;
  /** Character spans for this many of the kept tokens (profiling's token records); default none. */
  offsetTokens?: number;
  /** Where the text comes from ("line 12 of chat.jsonl"), for the message when it cannot be tokenised. */
  where?: string;
}

export interface TokenizedRow {
  ids: Int32Array;
  /** Ids before the cut to `maxTokens`. */
  length: number;
  /** `min(offsetTokens, ids.length)` spans into `text`. */
  offsets: [number, number][];
}

/** Tokenises dataset rows, off the calling thread when the implementation is sandboxed. */
export interface RowTokenizer {
  /** tokenizer.json, for messages. */
  readonly file: string;
  readonly bosTokenId?: number;
  readonly eosTokenId?: number;
  tokenizeRows(rows: readonly TokenizeRequest[]): Promise<TokenizedRow[]>;
}

export function tokenizeRow(tokenizer: TextTokenizer, request: TokenizeRequest): TokenizedRow {
  const all = tokenizer.encode(request.text);
  const ids = Int32Array.from(request.maxTokens === undefined ? all : all.slice(0, request.maxTokens));
  const wanted = Math.min(request.offsetTokens ?? 0, ids.length);
  return { ids, length: all.length, offsets: wanted > 0 ? tokenOffsets(tokenizer, request.text, all, wanted) : [] };
}

/** The same work in process: for a tokenizer already trusted (tests, the reference) or already sandboxed. */
export function inProcessRowTokenizer(tokenizer: TextTokenizer, file = 'tokenizer.json'): RowTokenizer {
  return {
    file,
    bosTokenId: tokenizer.bosTokenId,
    eosTokenId: tokenizer.eosTokenId,
    tokenizeRows: async (rows) => rows.map((row) => tokenizeRow(tokenizer, row)),
  };
}

/**
 * Offsets of the first `count` tokens. Rows can be far longer than the tokens profiled, so only a
 * prefix of the text that covers them is aligned; its ids are checked against the full encoding (a
 * token boundary near the cut could differ) and the full text is the fallback.
 */
export function tokenOffsets(tokenizer: TextTokenizer, text: string, ids: readonly number[], count: number): [number, number][] {
  if (count >= ids.length) return tokenizer.encodeWithOffsets(text).offsets.slice(0, count);
  const margin = 8;
  const approximateChars = tokenizer.decode(ids.slice(0, count + margin) as number[]).length + 16;
  const prefix = tokenizer.encodeWithOffsets(text.slice(0, approximateChars));
  const agrees = prefix.ids.length >= count && ids.slice(0, count).every((id, i) => prefix.ids[i] === id);
  return (agrees ? prefix : tokenizer.encodeWithOffsets(text)).offsets.slice(0, count);
}
