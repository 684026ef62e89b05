"""Byte-level BPE for the MoE Studio demo model, written out as a Hugging Face tokenizer.json.

The pipeline is the one `@huggingface/tokenizers` (JS) and `tokenizers` (Rust) run:
  pre_tokenizer Sequence[Digits(individual_digits), ByteLevel(GPT-2 regex)]
  model         BPE (merges by rank), no unk needed: all 256 bytes are in the vocabulary
  post_processor TemplateProcessing "<s> $A" (BOS prepended when add_special_tokens)
  decoder       ByteLevel
Digits are split one by one so that the model sees arithmetic digit by digit.
Used by train.py; run on its own to train and write the tokenizer:
  /usr/bin/python3 tools/demo-model/bpe.py   (after build_corpus.py; takes about a minute)
"""
import json
import os
import sys

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
SPECIALS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2 as in Llama/Mixtral
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
VOCAB_SIZE = 2048

DIGITS = regex.compile(r"[^\d]+|\d")  # JS: /[^\d]+|\d/gu (ASCII digits in both for ASCII text)
SPECIAL_SPLIT = regex.compile("(" + "|".join(regex.escape(s) for s in SPECIALS) + ")")
GPT2 = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {v: k for k, v in BYTE_ENCODER.items()}


def pre_tokenize(text):
    out = []
    for piece in DIGITS.findall(text):
        for word in GPT2.findall(piece):
            out.append("".join(BYTE_ENCODER[b] for b in word.encode("utf-8")))
    return out


def train(texts, vocab_size=VOCAB_SIZE):
    counts = {}
    for t in texts:
        for w in pre_tokenize(t):
            counts[w] = counts.get(w, 0) + 1
    words = [list(w) for w in counts]
    freqs = list(counts.values())
    pairs, where = {}, {}
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pairs[(a, b)] = pairs.get((a, b), 0) + freqs[i]
            where.setdefault((a, b), set()).add(i)
    merges = []
    n_merges = vocab_size - len(SPECIALS) - 256
    while len(merges) < n_merges and pairs:
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        a, b = best
        for i in sorted(where.pop(best, ())):
            w, f = words[i], freqs[i]
            for x, y in zip(w, w[1:]):
                pairs[(x, y)] -= f
                if pairs[(x, y)] <= 0:
                    del pairs[(x, y)]
            merged, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    merged.append(a + b)
                    j += 2
                else:
                    merged.append(w[j])
                    j += 1
            words[i] = merged
            for x, y in zip(merged, merged[1:]):
                pairs[(x, y)] = pairs.get((x, y), 0) + f
                where.setdefault((x, y), set()).add(i)
        pairs.pop(best, None)
    return merges


class Tokenizer:
    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self.vocab = {s: i for i, s in enumerate(SPECIALS)}
        for b in range(256):
            self.vocab[BYTE_ENCODER[b]] = len(self.vocab)
        for a, b in self.merges:
            self.vocab[a + b] = len(self.vocab)
        assert len(self.vocab) == len(SPECIALS) + 256 + len(self.merges), "merge produced a duplicate token"
        self.id_to_token = {i: s for s, i in self.vocab.items()}
        self.cache = {}

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls(json.load(f)["model"]["merges"])

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.ranks.get((x, y), 1 << 30), k) for k, (x, y) in enumerate(zip(parts, parts[1:]))]
            rank, k = min(ranked)
            if rank == 1 << 30:
                break
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        self.cache[word] = parts
        return parts

    def encode(self, text, bos=True):
        ids = [BOS_ID] if bos else []
        # Special tokens written literally in the text are matched first, as the HF libraries do.
        for section in SPECIAL_SPLIT.split(text):
            if section in self.vocab and section in SPECIALS:
                ids.append(self.vocab[section])
                continue
            for w in pre_tokenize(section):
                ids.extend(self.vocab[p] for p in self.bpe(w))
        return ids

    def decode(self, ids):
        toks = "".join(self.id_to_token[i] for i in ids if i >= len(SPECIALS))
        return bytes(BYTE_DECODER[c] for c in toks).decode("utf-8", errors="replace")

    def to_json(self):
        added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            ]},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS_ID], "tokens": ["<s>"]}},
            },
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": self.vocab, "merges": [[a, b] for a, b in self.merges]},
        }


TOKENIZER_CONFIG = {
    "add_bos_token": True,
    "add_eos_token": False,
    "added_tokens_decoder": {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                      "single_word": False, "special": True} for i, s in enumerate(SPECIALS)},
    "bos_token": "<s>",
    "clean_up_tokenization_spaces": False,
    "eos_token": "</s>",
    "legacy": False,
    "model_max_length": 256,
    "pad_token": None,
    "tokenizer_class": "PreTrainedTokenizerFast",
    "unk_token": "<unk>",
}


def save(tok, folder):
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tok.to_json(), f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(TOKENIZER_CONFIG, f, indent=2)
        f.write("\n")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l)["text"] for l in f]


def dump_check_cases(model_folder, out_path):
    """Write {text, ids} pairs for check_tokenizer.mjs: 100 texts per domain and split plus edge cases."""
    tok = Tokenizer.load(os.path.join(model_folder, "tokenizer.json"))
    texts = ["", " ", "Hello World", "  two  spaces\n\n\tand tabs ", "x = 12345 + 0.5e-3", "it's we're they'll",
             "<s> literal special </s>", "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \U0001F600", "\u0661\u0662 arabic digits"]
    for d in ("code", "prose", "arithmetic", "records"):
        for split in ("train", "valid"):
            texts += read_jsonl(os.path.join(HERE, "build", "%s.%s.jsonl" % (d, split)))[:100]
    cases = [{"text": t, "ids": tok.encode(t)} for t in texts]
    with open(out_path, "w") as f:
        json.dump(cases, f)
    print(len(cases), "cases written to", out_path)


if __name__ == "__main__":
    if sys.argv[1:2] == ["dump"]:
        dump_check_cases(sys.argv[2], sys.argv[3])
        sys.exit(0)
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "demo", "model")
    texts = []
    for d in ("code", "prose", "arithmetic", "records"):
        texts += read_jsonl(os.path.join(HERE, "build", d + ".train.jsonl"))
    tok = Tokenizer(train(texts))
    save(tok, out)
    print("vocab", len(tok.vocab))
