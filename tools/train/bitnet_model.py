"""BitNet b1.58 (2B4T architecture) in PyTorch, for quantization-aware training.

The forward pass follows docs FORMATS.md section 3.3 (the 2B4T graph):

    h = embed[tok]
    per layer:
        a = RMSNorm(h)                       input_layernorm
        q, k, v = BitLinear(a)               GQA, NeoX (rotate-half) RoPE
        o = causal attention(q, k, v)
        h = h + BitLinear_o(RMSNorm(o))      attn_sub_norm before o_proj
        f = RMSNorm(h)                       post_attention_layernorm
        m = relu(gate(f))^2 * up(f)
        h = h + BitLinear_down(RMSNorm(m))   ffn_sub_norm before down_proj
    logits = RMSNorm(h) @ embed^T            tied, not quantized

Every BitLinear quantizes its input per token to int8 (absmax, s = 127 / max|x|,
round half-to-even, clamp -128..127) and its weight per tensor to ternary
(absmean: beta = mean|W|, W_t = clamp(round(W / beta), -1, 1)); the output is
(x_q . W_t) * beta / s.  Gradients pass both roundings unchanged (straight-through
estimators), so d y / d x and d y / d W are those of F.linear(x, beta * W_t).

The matmul is done on the exact integers (int8 codes and -1/0/+1), which bf16
holds exactly, so bf16 autocast changes only the rounding of the output.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def ternarize(w):
    """Absmean ternary quantization of a whole tensor: returns (codes in {-1,0,1}, beta)."""
    beta = w.detach().float().abs().mean().clamp(min=1e-5)
    t = torch.clamp(torch.round(w.detach().float() / beta), -1, 1)
    return t, beta


class BitLinear(nn.Linear):
    """nn.Linear with BitNet b1.58 fake quantization (weights ternary, activations int8)."""

    def __init__(self, in_features, out_features):
        super().__init__(in_features, out_features, bias=False)
        # When set (after export), the layer uses these fixed ternary codes and
        # scale instead of quantizing its master weight: exactly what ships.
        self.frozen_codes = None
        self.frozen_scale = None

    def forward(self, x):
        x = x.float()
        # per-token int8 absmax, straight-through
        s = (127.0 / x.detach().abs().amax(dim=-1, keepdim=True).clamp(min=1e-5))
        xs = x * s
        xq = xs + (torch.clamp(torch.round(xs), -128, 127) - xs).detach()
        if self.frozen_codes is not None:
            wt = self.frozen_codes
            beta = self.frozen_scale
        else:
            w = self.weight.float()
            t, beta = ternarize(w)
            ws = w / beta
            wt = ws + (t - ws).detach()
        y = F.linear(xq, wt)
        return y.float() * (beta / s)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight.float() * x


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, hd = cfg["hidden_size"], cfg["head_dim"]
        self.n_head, self.n_kv, self.hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], hd
        self.q_proj = BitLinear(d, self.n_head * hd)
        self.k_proj = BitLinear(d, self.n_kv * hd)
        self.v_proj = BitLinear(d, self.n_kv * hd)
        self.o_proj = BitLinear(self.n_head * hd, d)
        self.attn_sub_norm = RMSNorm(self.n_head * hd, cfg["rms_norm_eps"])
        self.attn_drop = cfg.get("attn_dropout", 0.0)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.n_head // self.n_kv
        if rep > 1:  # query head h uses KV head h // rep
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if q.is_cuda and torch.is_autocast_enabled():  # training: bf16 attention
            q, k, v = q.bfloat16(), k.bfloat16(), v.bfloat16()
        o = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.attn_drop if self.training else 0.0)
        o = o.transpose(1, 2).reshape(B, T, self.n_head * self.hd)
        return self.o_proj(self.attn_sub_norm(o))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, f = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = BitLinear(d, f)
        self.up_proj = BitLinear(d, f)
        self.down_proj = BitLinear(f, d)
        self.ffn_sub_norm = RMSNorm(f, cfg["rms_norm_eps"])

    def forward(self, x):
        g = F.relu(self.gate_proj(x))
        return self.down_proj(self.ffn_sub_norm(g * g * self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.get("dropout", 0.0))

    def forward(self, h, cos, sin):
        h = h + self.drop(self.self_attn(self.input_layernorm(h), cos, sin))
        h = h + self.drop(self.mlp(self.post_attention_layernorm(h)))
        return h


class BitNetLM(nn.Module):
    """cfg keys: vocab_size, hidden_size, intermediate_size, num_hidden_layers,
    num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps, rope_theta,
    max_position_embeddings, dropout, attn_dropout."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.drop = nn.Dropout(cfg.get("dropout", 0.0))
        hd = cfg["head_dim"]
        inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(self, idx):
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device, dtype=torch.float32)
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        h = self.drop(self.embed_tokens(idx).float())
        for layer in self.layers:
            h = layer(h, cos, sin)
        h = self.norm(h)
        return F.linear(h, self.embed_tokens.weight)  # tied lm_head, not quantized

    def bitlinears(self):
        """(hf_name, module) for every quantized linear, HF tensor names without '.weight'."""
        out = []
        for i, layer in enumerate(self.layers):
            for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                out.append((f"model.layers.{i}.self_attn.{n}", getattr(layer.self_attn, n)))
            for n in ("gate_proj", "up_proj", "down_proj"):
                out.append((f"model.layers.{i}.mlp.{n}", getattr(layer.mlp, n)))
        return out

    def norms(self):
        """(hf_name, module) for every RMSNorm."""
        out = []
        for i, layer in enumerate(self.layers):
            out.append((f"model.layers.{i}.input_layernorm", layer.input_layernorm))
            out.append((f"model.layers.{i}.self_attn.attn_sub_norm", layer.self_attn.attn_sub_norm))
            out.append((f"model.layers.{i}.post_attention_layernorm", layer.post_attention_layernorm))
            out.append((f"model.layers.{i}.mlp.ffn_sub_norm", layer.mlp.ffn_sub_norm))
        out.append(("model.norm", self.norm))
        return out


@torch.no_grad()
def generate(model, ids, n_new, temperature=0.8, top_k=40, generator=None, ctx=512):
    """Sample n_new tokens after the list ids (no KV cache; the model is small).
    temperature 0 means greedy."""
    dev = next(model.parameters()).device
    x = torch.tensor([ids], dtype=torch.long, device=dev)
    for _ in range(n_new):
        logits = model(x[:, -ctx:])[0, -1].float()
        if temperature <= 0:
            nxt = int(torch.argmax(logits))
        else:
            logits = logits / temperature
            if top_k:
                v, _ = torch.topk(logits, min(top_k, logits.numel()))
                logits[logits < v[-1]] = -float("inf")
            p = torch.softmax(logits, dim=-1)
            nxt = int(torch.multinomial(p.cpu(), 1, generator=generator))
        x = torch.cat([x, torch.tensor([[nxt]], device=dev)], dim=1)
    return x[0].tolist()


def param_counts(model):
    tern = sum(m.weight.numel() for _, m in model.bitlinears())
    emb = model.embed_tokens.weight.numel()
    norm = sum(m.weight.numel() for _, m in model.norms())
    return tern, emb, norm


def gguf_size_estimate(model):
    """Bytes of an I2_S GGUF: ternary n/4 + 32 per tensor, F16 embedding, F32 norms
    (tokenizer metadata not counted)."""
    tern = sum(m.weight.numel() // 4 + 32 for _, m in model.bitlinears())
    emb = model.embed_tokens.weight.numel() * 2
    norm = sum(m.weight.numel() * 4 for _, m in model.norms())
    return tern + emb + norm
