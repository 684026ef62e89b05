"""PyTorch eager forward of a Mixtral checkpoint, for bench/runtime.bench.ts to compare against.

Plain torch (no transformers), written like transformers' eager MixtralForCausalLM: RMSNorm in fp32,
rotate_half RoPE, GQA by repeating k/v, causal softmax attention, softmax -> top-k -> renormalise
routing and a per-expert loop over the tokens routed to it. It reads the same safetensors the
runtime reads and the same token ids, and prints one JSON line: timings, mean loss and router logits
checksum so the bench can check both runtimes computed the same thing.

usage: torch_forward.py MODEL_DIR TOKENS_JSON THREADS REPEATS
"""
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    """Minimal safetensors reader (the package is not installed here): header, then raw little-endian bytes."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = bytearray(data[start:end])
        tensors[name] = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).float()
    return tensors


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    weights = {}
    for file in files:
        weights.update(read_safetensors(os.path.join(model_dir, file)))
    return weights


def rms_norm(x, weight, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Mixtral:
    def __init__(self, config, weights):
        self.c = config
        self.w = weights
        self.heads = config["num_attention_heads"]
        self.kv_heads = config["num_key_value_heads"]
        self.head_dim = config.get("head_dim") or config["hidden_size"] // self.heads
        self.eps = config["rms_norm_eps"]
        self.experts = config["num_local_experts"]
        self.top_k = config["num_experts_per_tok"]
        d = self.head_dim
        self.inv_freq = 1.0 / (config["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))

    def attention(self, i, x, cos, sin, mask):
        w = self.w
        p = f"model.layers.{i}.self_attn."
        b, t, _ = x.shape
        q = F.linear(x, w[p + "q_proj.weight"]).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = F.linear(x, w[p + "k_proj.weight"]).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = F.linear(x, w[p + "v_proj.weight"]).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim) + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, -1)
        return F.linear(out, w[p + "o_proj.weight"])

    def moe(self, i, x):
        w = self.w
        p = f"model.layers.{i}.block_sparse_moe."
        b, t, h = x.shape
        flat = x.view(-1, h)
        router_logits = F.linear(flat, w[p + "gate.weight"])
        routing = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing, selected = torch.topk(routing, self.top_k, dim=-1)
        routing = routing / routing.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(flat)
        mask = F.one_hot(selected, num_classes=self.experts).permute(2, 1, 0)
        for e in range(self.experts):
            slot, token = torch.where(mask[e])
            if token.numel() == 0:
                continue
            xe = flat[token]
            q = p + f"experts.{e}."
            y = F.linear(F.silu(F.linear(xe, w[q + "w1.weight"])) * F.linear(xe, w[q + "w3.weight"]), w[q + "w2.weight"])
            out.index_add_(0, token, y * routing[token, slot, None])
        return out.view(b, t, h), router_logits

    def forward(self, ids, lengths):
        w = self.w
        b, t = ids.shape
        x = F.embedding(ids, w["model.embed_tokens.weight"])
        freqs = torch.arange(t).float()[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        causal = torch.full((t, t), float("-inf")).triu(1)
        keys = torch.arange(t)[None, :] < lengths[:, None]
        mask = causal[None, None] + torch.where(keys, 0.0, float("-inf"))[:, None, None, :]
        routers = []
        for i in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            x = x + self.attention(i, rms_norm(x, w[p + "input_layernorm.weight"], self.eps), cos, sin, mask)
            y, logits = self.moe(i, rms_norm(x, w[p + "post_attention_layernorm.weight"], self.eps))
            routers.append(logits)
            x = x + y
        x = rms_norm(x, w["model.norm.weight"], self.eps)
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        logits = F.linear(x, head)
        # Next-token loss over real tokens only, as the runtime's in-graph loss.
        valid = torch.arange(t - 1)[None, :] < (lengths[:, None] - 1)
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none").view(b, t - 1)
        # Router logits of real tokens only: the runtime reports no padding either.
        return nll[valid], [r.view(b, t, -1)[keys] for r in routers]


def main():
    model_dir, tokens_json, threads, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    config = json.load(open(os.path.join(model_dir, "config.json")))
    if config["architectures"][0] != "MixtralForCausalLM":
        raise SystemExit("torch_forward.py implements Mixtral only")
    model = Mixtral(config, load_weights(model_dir))
    sequences = json.load(open(tokens_json))
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.zeros((len(sequences), int(lengths.max())), dtype=torch.long)
    for row, s in enumerate(sequences):
        ids[row, : len(s)] = torch.tensor(s)
    times = []
    with torch.inference_mode():
        model.forward(ids, lengths)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            nll, routers = model.forward(ids, lengths)
            times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({
        "median_s": times[len(times) // 2],
        "tokens": int(lengths.sum()),
        "mean_loss": float(nll.mean()),
        "router_logits_abs_sum": float(sum(r.abs().sum() for r in routers)),
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
