"""Recompute demo/data/validation_report.json from the shipped files alone, with NumPy.

An independent second implementation of the Hugging Face Mixtral forward (no torch, no code
shared with train.py), reading demo/model/config.json and model.safetensors as any loader
would, and the validation texts from demo/data. It checks every tensor name, shape and dtype,
then the per-domain validation loss, expert usage and multiple-choice accuracy against the
report. Run from the repository root after train.py:
  /usr/bin/python3 tools/demo-model/check_model.py
"""
import json
import math
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import bpe  # noqa: E402  (the tokenizer itself is checked against the JS library by check_tokenizer.mjs)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    assert (8 + n) % 8 == 0
    tensors, end = {}, 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", name
        a, b = meta["data_offsets"]
        assert b - a == 4 * int(np.prod(meta["shape"])), name
        tensors[name] = np.frombuffer(raw, dtype="<f4", count=(b - a) // 4, offset=8 + n + a).reshape(meta["shape"])
        end = max(end, b)
    assert 8 + n + end == len(raw), "trailing bytes"
    return tensors


def expected_shapes(c):
    h, i, v, d = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["head_dim"]
    shapes = {"model.embed_tokens.weight": [v, h], "model.norm.weight": [h], "lm_head.weight": [v, h]}
    for l in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % l
        shapes[p + "input_layernorm.weight"] = [h]
        shapes[p + "post_attention_layernorm.weight"] = [h]
        shapes[p + "self_attn.q_proj.weight"] = [c["num_attention_heads"] * d, h]
        shapes[p + "self_attn.k_proj.weight"] = [c["num_key_value_heads"] * d, h]
        shapes[p + "self_attn.v_proj.weight"] = [c["num_key_value_heads"] * d, h]
        shapes[p + "self_attn.o_proj.weight"] = [h, c["num_attention_heads"] * d]
        shapes[p + "block_sparse_moe.gate.weight"] = [c["num_local_experts"], h]
        for e in range(c["num_local_experts"]):
            q = p + "block_sparse_moe.experts.%d." % e
            shapes[q + "w1.weight"] = [i, h]
            shapes[q + "w3.weight"] = [i, h]
            shapes[q + "w2.weight"] = [h, i]
    return shapes


def rms_norm(x, w, eps):
    return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def forward(W, c, ids):
    """Logits [n, vocab] and the top-k expert indices per layer [n, k] for one sequence."""
    n, d = len(ids), c["head_dim"]
    nh, nkv, k_top = c["num_attention_heads"], c["num_key_value_heads"], c["num_experts_per_tok"]
    inv_freq = 1.0 / (c["rope_theta"] ** (np.arange(0, d, 2, dtype=np.float32) / d))
    angles = np.arange(n, dtype=np.float32)[:, None] * inv_freq[None]
    cos = np.cos(np.concatenate([angles, angles], -1))
    sin = np.sin(np.concatenate([angles, angles], -1))

    def rope(x):  # x: [heads, n, d]; HF rotate_half (first half / second half)
        rotated = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
        return x * cos + rotated * sin

    x = W["model.embed_tokens.weight"][ids].astype(np.float32)
    causal = np.tril(np.ones((n, n), dtype=bool))
    chosen = []
    for l in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % l
        hn = rms_norm(x, W[p + "input_layernorm.weight"], c["rms_norm_eps"])
        q = rope((hn @ W[p + "self_attn.q_proj.weight"].T).reshape(n, nh, d).transpose(1, 0, 2))
        k = rope((hn @ W[p + "self_attn.k_proj.weight"].T).reshape(n, nkv, d).transpose(1, 0, 2))
        v = (hn @ W[p + "self_attn.v_proj.weight"].T).reshape(n, nkv, d).transpose(1, 0, 2)
        kv_of_head = np.arange(nh) // (nh // nkv)
        scores = q @ k[kv_of_head].transpose(0, 2, 1) / math.sqrt(d)
        scores = np.where(causal, scores, -np.inf)
        attn = (softmax(scores) @ v[kv_of_head]).transpose(1, 0, 2).reshape(n, nh * d)
        x = x + attn @ W[p + "self_attn.o_proj.weight"].T
        hn = rms_norm(x, W[p + "post_attention_layernorm.weight"], c["rms_norm_eps"])
        probs = softmax(hn @ W[p + "block_sparse_moe.gate.weight"].T)
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :k_top]
        weights = np.take_along_axis(probs, top, -1)
        weights = weights / weights.sum(-1, keepdims=True)
        out = np.zeros_like(x)
        for e in range(c["num_local_experts"]):
            rows, slots = np.nonzero(top == e)
            if len(rows):
                q_ = p + "block_sparse_moe.experts.%d." % e
                g = hn[rows] @ W[q_ + "w1.weight"].T
                u = hn[rows] @ W[q_ + "w3.weight"].T
                out[rows] += weights[rows, slots, None] * ((g / (1 + np.exp(-g)) * u) @ W[q_ + "w2.weight"].T)
        x = x + out
        chosen.append(top)
    return rms_norm(x, W["model.norm.weight"], c["rms_norm_eps"]) @ W["lm_head.weight"].T, chosen


def log_softmax(z):
    z = z.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def main():
    model_dir, data_dir = os.path.join(ROOT, "demo", "model"), os.path.join(ROOT, "demo", "data")
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    W = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    shapes = expected_shapes(c)
    assert sorted(W) == sorted(shapes), set(W) ^ set(shapes)
    for name, shape in shapes.items():
        assert list(W[name].shape) == shape, (name, W[name].shape, shape)
    print("tensors: %d, names and shapes as Mixtral expects" % len(W))

    with open(os.path.join(data_dir, "validation_report.json")) as f:
        report = json.load(f)
    tok = bpe.Tokenizer.load(os.path.join(model_dir, "tokenizer.json"))
    worst = 0.0
    for domain, expected in report["validation"].items():
        with open(os.path.join(data_dir, domain + ".valid.jsonl")) as f:
            texts = [json.loads(line)["text"] for line in f]
        total, count = 0.0, 0
        usage = np.zeros((c["num_hidden_layers"], c["num_local_experts"]))
        for text in texts:
            ids = tok.encode(text)
            logits, chosen = forward(W, c, ids)
            lp = log_softmax(logits)
            total -= sum(lp[k - 1, ids[k]] for k in range(1, len(ids)))
            count += len(ids) - 1
            for l, top in enumerate(chosen):
                usage[l] += np.bincount(top.reshape(-1), minlength=c["num_local_experts"])
        loss = total / count
        usage /= usage.sum(-1, keepdims=True)
        usage_diff = np.abs(usage - np.array(report["expert_usage"][domain])).max()
        worst = max(worst, abs(loss - expected["mean_loss"]))
        print("%-10s loss %.5f (report %.5f), tokens %d (report %d), usage max diff %.4f" % (
            domain, loss, expected["mean_loss"], count, expected["predicted_tokens"], usage_diff))
        assert count == expected["predicted_tokens"]
    with open(os.path.join(data_dir, "arithmetic-mc.jsonl")) as f:
        items = [json.loads(line) for line in f]
    correct = 0
    for item in items:
        prompt = tok.encode(item["prompt"])
        scores = []
        for choice in item["choices"]:
            full = tok.encode(item["prompt"] + choice)
            lp = log_softmax(forward(W, c, full)[0])
            scores.append(sum(lp[k - 1, full[k]] for k in range(len(prompt), len(full))))
        correct += int(np.argmax(scores) == item["label"])
    accuracy = correct / len(items)
    print("arithmetic-mc accuracy %.4f (report %.4f)" % (accuracy, report["multiple_choice"]["arithmetic-mc"]["accuracy"]))
    print("largest loss difference %.2e" % worst)
    assert worst < 1e-4


if __name__ == "__main__":
    main()
