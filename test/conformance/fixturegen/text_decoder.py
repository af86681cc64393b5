"""Llama-family decoder (RMSNorm, RoPE or Qwen2-VL M-RoPE, GQA, SwiGLU) with an explicit KV cache, written so that
torch.onnx.export yields the merged-decoder contract: past_key_values.{i}.key/value in, present.{i}.key/value out."""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TextDims:
    vocab: int
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    qkv_bias: bool = False
    # Qwen2-VL: rotary frequency slots given to the temporal, height and width position rows (sums to head_dim / 2).
    mrope_section: tuple[int, int, int] | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def residual_writer(fan_in: int, fan_out: int) -> nn.Linear:
    """A projection back into the residual stream, loud enough that the layers move a token's embedding rather
    than a random decoder echoing its input."""
    layer = nn.Linear(fan_in, fan_out, bias=False)
    nn.init.normal_(layer.weight, std=2 * fan_in**-0.5)
    return layer


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim) + 0.1 * torch.randn(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Rotary(nn.Module):
    def __init__(self, dims: TextDims):
        super().__init__()
        d = dims.head_dim
        self.register_buffer("inv_freq", 1.0 / (dims.rope_theta ** (torch.arange(0, d, 2).float() / d)), persistent=False)
        self.mrope_section = dims.mrope_section

    def forward(self, position_ids):
        """position_ids [batch, seq] (1-D RoPE) or [3, batch, seq] (M-RoPE) -> cos, sin [batch, 1, seq, head_dim]."""
        freqs = position_ids.unsqueeze(-1).float() * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        if self.mrope_section is not None:
            # Chunk i of the (section * 2) split takes its angle from position row i % 3 (t, h, w).
            sizes = list(self.mrope_section) * 2
            cos = torch.cat([c[i % 3] for i, c in enumerate(cos.split(sizes, dim=-1))], dim=-1)
            sin = torch.cat([s[i % 3] for i, s in enumerate(sin.split(sizes, dim=-1))], dim=-1)
        return cos.unsqueeze(1), sin.unsqueeze(1)


class Attention(nn.Module):
    def __init__(self, dims: TextDims):
        super().__init__()
        self.dims = dims
        d = dims.head_dim
        self.q_proj = nn.Linear(dims.hidden, dims.heads * d, bias=dims.qkv_bias)
        self.k_proj = nn.Linear(dims.hidden, dims.kv_heads * d, bias=dims.qkv_bias)
        self.v_proj = nn.Linear(dims.hidden, dims.kv_heads * d, bias=dims.qkv_bias)
        self.o_proj = residual_writer(dims.heads * d, dims.hidden)

    def forward(self, x, cos, sin, bias, past_k, past_v):
        b, s, _ = x.shape
        d, h, kvh = self.dims.head_dim, self.dims.heads, self.dims.kv_heads
        q = self.q_proj(x).view(b, s, h, d).transpose(1, 2)
        k = self.k_proj(x).view(b, s, kvh, d).transpose(1, 2)
        v = self.v_proj(x).view(b, s, kvh, d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        group = h // kvh
        kk = k.unsqueeze(2).expand(b, kvh, group, k.shape[2], d).reshape(b, h, k.shape[2], d)
        vv = v.unsqueeze(2).expand(b, kvh, group, v.shape[2], d).reshape(b, h, v.shape[2], d)
        scores = q @ kk.transpose(-1, -2) / (d**0.5) + bias
        out = (scores.softmax(-1) @ vv).transpose(1, 2).reshape(b, s, h * d)
        return self.o_proj(out), k, v


class Layer(nn.Module):
    def __init__(self, dims: TextDims):
        super().__init__()
        self.input_layernorm = RMSNorm(dims.hidden, dims.rms_eps)
        self.self_attn = Attention(dims)
        self.post_attention_layernorm = RMSNorm(dims.hidden, dims.rms_eps)
        self.gate_proj = nn.Linear(dims.hidden, dims.intermediate, bias=False)
        self.up_proj = nn.Linear(dims.hidden, dims.intermediate, bias=False)
        self.down_proj = residual_writer(dims.intermediate, dims.hidden)

    def forward(self, x, cos, sin, bias, past_k, past_v):
        attn, k, v = self.self_attn(self.input_layernorm(x), cos, sin, bias, past_k, past_v)
        x = x + attn
        y = self.post_attention_layernorm(x)
        x = x + self.down_proj(nn.functional.silu(self.gate_proj(y)) * self.up_proj(y))
        return x, k, v


class Decoder(nn.Module):
    """forward(inputs_embeds, attention_mask, position_ids, *past) -> (logits, *present), past/present as (k0, v0, k1, ...)."""

    def __init__(self, dims: TextDims, embed: nn.Embedding, tie_word_embeddings: bool):
        super().__init__()
        self.dims = dims
        self.rotary = Rotary(dims)
        self.layers = nn.ModuleList([Layer(dims) for _ in range(dims.layers)])
        self.norm = RMSNorm(dims.hidden, dims.rms_eps)
        self.lm_head = nn.Linear(dims.hidden, dims.vocab, bias=False)
        if tie_word_embeddings:
            self.lm_head.weight = embed.weight

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        seq = inputs_embeds.shape[1]
        total = attention_mask.shape[1]
        # Query t sits at absolute position (total - seq + t); it sees keys up to there that the mask keeps.
        query_pos = torch.arange(seq) + (total - seq)
        causal = torch.arange(total).unsqueeze(0) <= query_pos.unsqueeze(1)
        keep = causal.unsqueeze(0).unsqueeze(0) & attention_mask.bool().unsqueeze(1).unsqueeze(1)
        bias = (~keep).float() * torch.finfo(torch.float32).min
        cos, sin = self.rotary(position_ids)
        x = inputs_embeds
        present = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, cos, sin, bias, past[2 * i], past[2 * i + 1])
            present += [k, v]
        return (self.lm_head(self.norm(x)), *present)


class EmbedTokens(nn.Module):
    def __init__(self, embed: nn.Embedding):
        super().__init__()
        self.embed = embed

    def forward(self, input_ids):
        return self.embed(input_ids)
