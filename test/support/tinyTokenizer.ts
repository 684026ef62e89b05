/**
 * A real byte-level BPE tokenizer.json (the GPT-2 / Qwen / OLMoE scheme) with a vocabulary of an
 * exact size, trained in-process on a fixed English sample so it is deterministic and needs no
 * download. Every byte has a token, so any text encodes; merges make common words single tokens.
 */

/** GPT-2's reversible map from bytes to printable characters, so byte tokens are JSON-safe strings. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  }
  return table;
}

export const SPECIAL_TOKENS = ['<unk>', '<s>', '</s>'] as const;
/** The smallest vocabulary that still covers every byte. */
export const MIN_VOCAB_SIZE = SPECIAL_TOKENS.length + 256;

const TRAINING_TEXT =
  'The quick brown fox jumps over the lazy dog. A mixture of experts routes each token to a few ' +
  'experts, and the router learns which expert is best for which token. Pruning removes the experts ' +
  'that are rarely chosen; merging folds similar experts together. The model keeps its quality when ' +
  'the right experts are kept. In the beginning there was the word, and the word was with the model. ' +
  'Numbers like 1, 2, 3, 10, 100 and 2024 appear in text too.';

// The GPT-2 pre-tokenizer pattern, as in Qwen's and OLMoE's tokenizer.json.
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export function buildTinyTokenizer(vocabSize: number): { tokenizerJson: object; tokenizerConfig: object } {
  if (vocabSize < MIN_VOCAB_SIZE) {
    throw new Error(`A byte-level tokenizer needs a vocabulary of at least ${MIN_VOCAB_SIZE}, got ${vocabSize}.`);
  }
  const byteChars = bytesToUnicode();
  const vocab = new Map<string, number>();
  SPECIAL_TOKENS.forEach((token) => vocab.set(token, vocab.size));
  byteChars.forEach((char) => vocab.set(char, vocab.size));

  const encoder = new TextEncoder();
  const words = (TRAINING_TEXT.match(GPT2_SPLIT) ?? []).map((word) =>
    [...encoder.encode(word)].map((byte) => byteChars[byte]),
  );
  const merges: string[] = [];
  while (vocab.size < vocabSize) {
    const pairCounts = new Map<string, number>();
    for (const word of words) {
      for (let i = 0; i + 1 < word.length; i++) {
        const pair = `${word[i]} ${word[i + 1]}`;
        pairCounts.set(pair, (pairCounts.get(pair) ?? 0) + 1);
      }
    }
    // Most frequent pair first; ties broken by the pair text so the result never depends on Map order.
    const best = [...pairCounts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0];
    if (!best) break;
    const [left, right] = best[0].split(' ');
    merges.push(best[0]);
    vocab.set(left + right, vocab.size);
    for (const word of words) {
      for (let i = 0; i + 1 < word.length; i++) {
        if (word[i] === left && word[i + 1] === right) word.splice(i, 2, left + right);
      }
    }
  }
  // The sample runs out of pairs before large vocabularies fill; the rest are never-produced tokens.
  while (vocab.size < vocabSize) vocab.set(`<unused_${vocab.size}>`, vocab.size);

  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges,
    },
  };
  const tokenizerConfig = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    model_max_length: 4096,
    clean_up_tokenization_spaces: false,
  };
  return { tokenizerJson, tokenizerConfig };
}

/**
 * A Llama / Mixtral-style tokenizer.json: spaces become "▁" and one is prepended (the normaliser), a
 * BPE over characters with byte fallback (<0x..> tokens for anything outside the vocabulary, e.g. é
 * or an emoji), `<s>` added in front, and the decoder chain that undoes it all, including the Strip
 * that drops the prepended space at the start of every decode call.
 */
export function buildMetaspaceTokenizer(): { tokenizerJson: object; tokenizerConfig: object } {
  const vocab = new Map<string, number>();
  SPECIAL_TOKENS.forEach((token) => vocab.set(token, vocab.size));
  for (let b = 0; b < 256; b++) vocab.set(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, vocab.size);
  const characters = '▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?()[]{}=+-*/#_\'"<>';
  for (const char of characters) vocab.set(char, vocab.size);
  const merges = ['▁ t', 'h e', '▁t he', 'e r', '▁ e', '▁e x', 'p er', '▁ex per', 't s', 'i n', '▁ m', 'o d', '▁m od', 'e l', '▁mod el'];
  for (const merge of merges) vocab.set(merge.replace(' ', ''), vocab.size);
  const special = (content: string, id: number) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map(special),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      merges,
    },
  };
  return { tokenizerJson, tokenizerConfig: { tokenizer_class: 'LlamaTokenizerFast', bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', clean_up_tokenization_spaces: false } };
}
