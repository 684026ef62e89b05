"""PyTorch eager forward of a Mixtral or OLMoE checkpoint, for bench/runtime.bench.ts and
bench/realShape.bench.ts to compare against.

Plain torch (no transformers), written like transformers' eager MixtralForCausalLM and OlmoeForCausalLM:
RMSNorm in fp32, (OLMoE) q/k RMSNorm over the whole projection before RoPE, rotate_half RoPE, GQA by
repeating k/v, causal softmax attention, softmax -> top-k (-> renormalise where the model does) routing and
a per-expert loop over the tokens routed to it. It reads the same safetensors the
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


def read_safetensors(path, needed):
    """Minimal safetensors reader (the package is not installed here): header, then raw little-endian bytes.
    Reads the tensors `needed(name)` accepts, one at a time, so a cut of a larger checkpoint (whose shards
    hold other layers too) costs what the cut needs, and a shard is never held whole beside its fp32 copy."""
    tensors = {}
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        for name, info in header.items():
            if name == "__metadata__" or not needed(name):
                continue
            start, end = info["data_offsets"]
            f.seek(8 + header_len + start)
            raw = bytearray(f.read(end - start))
            tensors[name] = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).float()
    return tensors


def load_weights(model_dir, layers):
    """The weights of the first `layers` decoder layers plus embedding, final norm and head."""
    def needed(name):
        return not name.startswith("model.layers.") or int(name.split(".")[2]) < layers
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted({file for name, file in json.load(open(index))["weight_map"].items() if needed(name)})
    else:
        files = ["model.safetensors"]
    weights = {}
    for file in files:
        weights.update(read_safetensors(os.path.join(model_dir, file), needed))
    return weights


# Per architecture: where the MoE block lives, its experts' gate/up/down names, the experts' config key, and
# whether top-k weights are renormalised (Mixtral always; OLMoE as config.json says, false in OLMoE-1B-7B).
ARCHITECTURES = {
    "MixtralForCausalLM": {"moe": "block_sparse_moe", "expert": ("w1", "w3", "w2"), "experts_key": "num_local_experts", "qk_norm": False},
    "OlmoeForCausalLM": {"moe": "mlp", "expert": ("gate_proj", "up_proj", "down_proj"), "experts_key": "num_experts", "qk_norm": True},
}


def rms_norm(x, weight, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class SparseMoeModel:
    def __init__(self, config, weights):
        self.c = config
        self.w = weights
        self.arch = ARCHITECTURES[config["architectures"][0]]
        self.heads = config["num_attention_heads"]
        self.kv_heads = config["num_key_value_heads"]
        self.head_dim = config.get("head_dim") or config["hidden_size"] // self.heads
        self.eps = config["rms_norm_eps"]
        self.experts = config[self.arch["experts_key"]]
        self.top_k = config["num_experts_per_tok"]
        self.norm_top_k = config["architectures"][0] == "MixtralForCausalLM" or config.get("norm_topk_prob", False)
        d = self.head_dim
        self.inv_freq = 1.0 / (config["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))

    def attention(self, i, x, cos, sin, mask):
        w = self.w
        p = f"model.layers.{i}.self_attn."
        b, t, _ = x.shape
        q = F.linear(x, w[p + "q_proj.weight"])
        k = F.linear(x, w[p + "k_proj.weight"])
        if self.arch["qk_norm"]:
            q = rms_norm(q, w[p + "q_norm.weight"], self.eps)
            k = rms_norm(k, w[p + "k_norm.weight"], self.eps)
        q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
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
        p = f"model.layers.{i}.{self.arch['moe']}."
        b, t, h = x.shape
        flat = x.view(-1, h)
        router_logits = F.linear(flat, w[p + "gate.weight"])
        routing = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing, selected = torch.topk(routing, self.top_k, dim=-1)
        if self.norm_top_k:
            routing = routing / routing.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(flat)
        mask = F.one_hot(selected, num_classes=self.experts).permute(2, 1, 0)
        for e in range(self.experts):
            slot, token = torch.where(mask[e])
            if token.numel() == 0:
                continue
            xe = flat[token]
            q = p + f"experts.{e}."
            gate, up, down = (w[q + name + ".weight"] for name in self.arch["expert"])
            y = F.linear(F.silu(F.linear(xe, gate)) * F.linear(xe, up), down)
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
    if config["architectures"][0] not in ARCHITECTURES:
        raise SystemExit(f"torch_forward.py implements {', '.join(ARCHITECTURES)} only")
    model = SparseMoeModel(config, load_weights(model_dir, config["num_hidden_layers"]))
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
