"""Llama-3.2-Vision (`model_type: mllama`) in plain PyTorch, with the parameter names of the checkpoints on the
hub, written from transformers' modeling_mllama.py (read, not copied; no transformers import):

* vision tower: 14-px patches of up to 4 tiles of 560², pre-tile aspect-ratio embedding, class token, gated
  position + tile-position embedding, a local encoder whose chosen intermediate states are kept, a gated global
  encoder, the final state concatenated with the intermediate ones (vision_output_dim);
* multi_modal_projector: one Linear to the text width;
* text model: Llama-3 self-attention layers (RoPE with llama3 frequency scaling, GQA, SwiGLU) and, at
  `cross_attention_layers`, gated cross-attention layers (q_norm/k_norm RMSNorm per head, no RoPE) over the
  projected vision states, with the row mask that zeroes the MLP of text rows that see no image.

`forward_reference` runs the whole model without any cache: what the exported graphs are checked against.
The export wrappers (VisionExport, DecoderExport) split it into the engine's sessions."""

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

NEG = torch.finfo(torch.float32).min


@dataclass
class TextDims:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    rms_eps: float
    rope_theta: float
    rope_scaling: dict | None
    cross_layers: list[int]

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def self_layers(self) -> list[int]:
        return [i for i in range(self.layers) if i not in self.cross_layers]


@dataclass
class VisionDims:
    hidden: int
    heads: int
    intermediate: int
    layers: int
    global_layers: int
    intermediate_indices: list[int]
    output_dim: int
    image_size: int
    patch: int
    max_tiles: int
    max_aspect_ratio_id: int
    norm_eps: float
    channels: int = 3

    @property
    def patches(self) -> int:
        """Tokens per tile: the patch grid plus the class token."""
        return (self.image_size // self.patch) ** 2 + 1


def dims_from_config(config: dict) -> tuple[TextDims, VisionDims]:
    t, v = config["text_config"], config["vision_config"]
    text = TextDims(
        vocab=t["vocab_size"],
        hidden=t["hidden_size"],
        layers=t["num_hidden_layers"],
        heads=t["num_attention_heads"],
        kv_heads=t["num_key_value_heads"],
        intermediate=t["intermediate_size"],
        rms_eps=t.get("rms_norm_eps", 1e-5),
        rope_theta=t.get("rope_theta", 500000.0),
        rope_scaling=t.get("rope_scaling"),
        cross_layers=list(t["cross_attention_layers"]),
    )
    vision = VisionDims(
        hidden=v["hidden_size"],
        heads=v["attention_heads"] if "attention_heads" in v else v["num_attention_heads"],
        intermediate=v["intermediate_size"],
        layers=v["num_hidden_layers"],
        global_layers=v["num_global_layers"],
        intermediate_indices=list(v["intermediate_layers_indices"]),
        output_dim=v["vision_output_dim"],
        image_size=v["image_size"],
        patch=v["patch_size"],
        max_tiles=v["max_num_tiles"],
        max_aspect_ratio_id=len(v["supported_aspect_ratios"]),
        norm_eps=v.get("norm_eps", 1e-5),
        channels=v.get("num_channels", 3),
    )
    if vision.patches % 8 == 0:
        raise ValueError(
            f"vision_config: {vision.patches} tokens per tile (patch grid + class token) is a multiple of 8; transformers' padding "
            "mask is undefined then (its slice [-0:] masks every patch), so this exporter does not guess"
        )
    if vision.hidden * (1 + len(vision.intermediate_indices)) != vision.output_dim:
        raise ValueError(
            f"vision_config: vision_output_dim {vision.output_dim}; expected hidden_size x (1 + len(intermediate_layers_indices)) = "
            f"{vision.hidden * (1 + len(vision.intermediate_indices))}"
        )
    return text, vision


# --------------------------------------------------------------------------- vision tower


class VisionAttention(nn.Module):
    def __init__(self, d: VisionDims):
        super().__init__()
        self.heads = d.heads
        self.head_dim = d.hidden // d.heads
        self.q_proj = nn.Linear(d.hidden, d.hidden, bias=False)
        self.k_proj = nn.Linear(d.hidden, d.hidden, bias=False)
        self.v_proj = nn.Linear(d.hidden, d.hidden, bias=False)
        self.o_proj = nn.Linear(d.hidden, d.hidden, bias=False)

    def forward(self, x, bias):
        b, n, w = x.shape
        hd = self.head_dim

        def split(t):
            return t.view(b, n, self.heads, hd).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd) + bias
        return self.o_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, w))


class VisionMLP(nn.Module):
    def __init__(self, d: VisionDims):
        super().__init__()
        self.fc1 = nn.Linear(d.hidden, d.intermediate)
        self.fc2 = nn.Linear(d.intermediate, d.hidden)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class VisionLayer(nn.Module):
    def __init__(self, d: VisionDims, gated: bool):
        super().__init__()
        self.self_attn = VisionAttention(d)
        self.mlp = VisionMLP(d)
        self.input_layernorm = nn.LayerNorm(d.hidden, eps=d.norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(d.hidden, eps=d.norm_eps)
        self.gated = gated
        if gated:
            self.gate_attn = nn.Parameter(torch.zeros(1))
            self.gate_ffn = nn.Parameter(torch.zeros(1))

    def forward(self, x, bias):
        h = self.self_attn(self.input_layernorm(x), bias)
        x = x + (self.gate_attn.tanh() * h if self.gated else h)
        h = self.mlp(self.post_attention_layernorm(x))
        return x + (self.gate_ffn.tanh() * h if self.gated else h)


class VisionEncoder(nn.Module):
    def __init__(self, d: VisionDims, count: int, gated: bool):
        super().__init__()
        self.layers = nn.ModuleList([VisionLayer(d, gated) for _ in range(count)])

    def forward(self, x, bias):
        """The final state and every layer's input (index 0 = the embeddings), as transformers' hidden_states."""
        states = []
        for layer in self.layers:
            states.append(x)
            x = layer(x, bias)
        states.append(x)
        return x, states


class AspectRatioEmbedding(nn.Module):
    """A gated per-tile vector chosen by the aspect-ratio id, added to every token of the tile."""

    def __init__(self, d: VisionDims):
        super().__init__()
        self.d = d
        self.embedding = nn.Embedding(d.max_aspect_ratio_id + 1, d.max_tiles * d.hidden)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x, aspect_ratio_ids):
        e = self.embedding(aspect_ratio_ids).reshape(-1, self.d.max_tiles, 1, self.d.hidden)
        return x + e * self.gate.tanh()


class PositionEmbedding(nn.Module):
    """Position embedding shared by the tiles, mixed by a gate with a per-aspect-ratio tile-position embedding."""

    def __init__(self, d: VisionDims):
        super().__init__()
        self.d = d
        self.gate = nn.Parameter(torch.zeros(1))
        self.embedding = nn.Parameter(torch.zeros(d.patches, d.hidden))
        self.tile_embedding = nn.Embedding(d.max_aspect_ratio_id + 1, d.max_tiles * d.patches * d.hidden)

    def forward(self, x, aspect_ratio_ids):
        d = self.d
        x = x + ((1 - self.gate.tanh()) * self.embedding).view(1, 1, d.patches, d.hidden)
        tiles = self.tile_embedding(aspect_ratio_ids).reshape(x.shape[0], d.max_tiles, d.patches, d.hidden)
        return x + self.gate.tanh() * tiles


def aspect_ratio_bias(aspect_ratio_mask, patches: int, padded: int, tiles: int):
    """transformers' _prepare_aspect_ratio_attention_mask: a tile-level padding vector (padding tiles, and each
    tile's padding patches) and the additive bias of its outer product, so only padding-to-padding pairs are
    masked. (With no padding patches its slice `[-0:]` would cover every patch; the exporter refuses that case.)"""
    b = aspect_ratio_mask.shape[0]
    real = aspect_ratio_mask.view(b, tiles, 1, 1).float().repeat(1, 1, padded, 1)
    real[:, :, patches:] = 0
    pad = (1 - real).reshape(b, tiles * padded, 1)
    return (pad @ pad.transpose(-1, -2) * NEG).unsqueeze(1)


class VisionModel(nn.Module):
    def __init__(self, d: VisionDims):
        super().__init__()
        self.d = d
        self.patch_embedding = nn.Conv2d(d.channels, d.hidden, kernel_size=d.patch, stride=d.patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(d.hidden))
        self.gated_positional_embedding = PositionEmbedding(d)
        self.pre_tile_positional_embedding = AspectRatioEmbedding(d)
        self.post_tile_positional_embedding = AspectRatioEmbedding(d)
        self.layernorm_pre = nn.LayerNorm(d.hidden)
        self.layernorm_post = nn.LayerNorm(d.hidden)
        self.transformer = VisionEncoder(d, d.layers, gated=False)
        self.global_transformer = VisionEncoder(d, d.global_layers, gated=True)

    def forward(self, pixel_values, aspect_ratio_ids, aspect_ratio_mask):
        """pixel_values [images, tiles, 3, S, S], aspect_ratio_ids [images], aspect_ratio_mask [images, tiles]
        -> [images, tiles, patches, vision_output_dim]."""
        d = self.d
        n, tiles = pixel_values.shape[0], d.max_tiles
        x = self.patch_embedding(pixel_values.reshape(n * tiles, d.channels, d.image_size, d.image_size))
        x = x.flatten(2).transpose(1, 2)
        grid = x.shape[1]
        x = self.pre_tile_positional_embedding(x.reshape(n, tiles, grid, d.hidden), aspect_ratio_ids)
        x = x.reshape(n * tiles, grid, d.hidden)
        x = torch.cat([self.class_embedding.expand(n * tiles, 1, d.hidden), x], dim=1)
        x = self.gated_positional_embedding(x.reshape(n, tiles, d.patches, d.hidden), aspect_ratio_ids)
        x = self.layernorm_pre(x)
        pad = (8 - d.patches % 8) % 8
        padded = d.patches + pad
        x = F.pad(x, (0, 0, 0, pad))
        bias = aspect_ratio_bias(aspect_ratio_mask, d.patches, padded, tiles)
        x, states = self.transformer(x.reshape(n, tiles * padded, d.hidden), bias)
        x = self.layernorm_post(x)
        x = self.post_tile_positional_embedding(x.reshape(n, tiles, padded, d.hidden), aspect_ratio_ids)
        x, _ = self.global_transformer(x.reshape(n, tiles * padded, d.hidden), bias)
        x = x.reshape(n, tiles, padded, d.hidden)[:, :, : d.patches]
        # transformers stacks the kept states on a last axis and flattens it with the width: interleaved, not concatenated.
        kept = torch.stack([states[i] for i in d.intermediate_indices], dim=-1)
        kept = kept.reshape(n, tiles, padded, -1)[:, :, : d.patches]
        return torch.cat([x, kept], dim=-1)


# --------------------------------------------------------------------------- text model


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope_inv_freq(t: TextDims) -> torch.Tensor:
    """RoPE frequencies, with Llama 3's scaling (rope_type llama3) when config.json asks for it."""
    d = t.head_dim
    inv = 1.0 / (t.rope_theta ** (torch.arange(0, d, 2).float() / d))
    s = t.rope_scaling
    if s is None or s.get("rope_type", s.get("type")) in (None, "default"):
        return inv.float()
    if s.get("rope_type", s.get("type")) != "llama3":
        raise ValueError(f"text_config.rope_scaling: rope_type {s.get('rope_type')}; expected llama3 or none")
    factor, low, high, original = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    low_wavelen, high_wavelen = original / low, original / high
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled).float()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class MLP(nn.Module):
    def __init__(self, t: TextDims):
        super().__init__()
        self.gate_proj = nn.Linear(t.hidden, t.intermediate, bias=False)
        self.up_proj = nn.Linear(t.hidden, t.intermediate, bias=False)
        self.down_proj = nn.Linear(t.intermediate, t.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def grouped_attention(q, k, v, bias, kv_heads: int, head_dim: int):
    """q [B, H, T, d]; k, v [B or 1, kv_heads, L, d] (batch 1 broadcasts: one item's states for every row);
    bias broadcastable to [B, 1, T, L]. GQA by grouping the queries, so k and v are never repeated."""
    b, h, t, d = q.shape
    q = q.reshape(b, kv_heads, h // kv_heads, t, d)
    scores = q @ k.unsqueeze(2).transpose(-1, -2) / math.sqrt(head_dim) + bias.unsqueeze(2)
    out = scores.softmax(-1) @ v.unsqueeze(2)
    return out.reshape(b, h, t, d).transpose(1, 2).reshape(b, t, h * d)


class SelfAttention(nn.Module):
    def __init__(self, t: TextDims):
        super().__init__()
        self.t = t
        self.q_proj = nn.Linear(t.hidden, t.heads * t.head_dim, bias=False)
        self.k_proj = nn.Linear(t.hidden, t.kv_heads * t.head_dim, bias=False)
        self.v_proj = nn.Linear(t.hidden, t.kv_heads * t.head_dim, bias=False)
        self.o_proj = nn.Linear(t.heads * t.head_dim, t.hidden, bias=False)

    def forward(self, x, cos, sin, bias, past_k, past_v):
        b, s, _ = x.shape
        t = self.t
        q = self.q_proj(x).view(b, s, t.heads, t.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, t.kv_heads, t.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, t.kv_heads, t.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        return self.o_proj(grouped_attention(q, k, v, bias, t.kv_heads, t.head_dim)), k, v


class SelfAttentionLayer(nn.Module):
    def __init__(self, t: TextDims):
        super().__init__()
        self.self_attn = SelfAttention(t)
        self.mlp = MLP(t)
        self.input_layernorm = RMSNorm(t.hidden, t.rms_eps)
        self.post_attention_layernorm = RMSNorm(t.hidden, t.rms_eps)

    def forward(self, x, cos, sin, bias, past_k, past_v):
        h, k, v = self.self_attn(self.input_layernorm(x), cos, sin, bias, past_k, past_v)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), k, v


class CrossAttention(nn.Module):
    def __init__(self, t: TextDims):
        super().__init__()
        self.t = t
        self.q_proj = nn.Linear(t.hidden, t.heads * t.head_dim, bias=False)
        self.k_proj = nn.Linear(t.hidden, t.kv_heads * t.head_dim, bias=False)
        self.v_proj = nn.Linear(t.hidden, t.kv_heads * t.head_dim, bias=False)
        self.o_proj = nn.Linear(t.heads * t.head_dim, t.hidden, bias=False)
        self.q_norm = RMSNorm(t.head_dim, t.rms_eps)
        self.k_norm = RMSNorm(t.head_dim, t.rms_eps)

    def key_values(self, states):
        """The layer's keys and values of the projected vision states [B, L, hidden] -> [B, kv_heads, L, head_dim] each:
        all the layer ever computes from the image, so it is computed once per item."""
        b, n, _ = states.shape
        t = self.t
        k = self.k_proj(states).view(b, n, t.kv_heads, t.head_dim).transpose(1, 2)
        v = self.v_proj(states).view(b, n, t.kv_heads, t.head_dim).transpose(1, 2)
        return self.k_norm(k), v

    def forward(self, x, k, v, bias):
        b, s, _ = x.shape
        t = self.t
        q = self.q_norm(self.q_proj(x).view(b, s, t.heads, t.head_dim).transpose(1, 2))
        return self.o_proj(grouped_attention(q, k, v, bias, t.kv_heads, t.head_dim))


class CrossAttentionLayer(nn.Module):
    def __init__(self, t: TextDims):
        super().__init__()
        self.cross_attn = CrossAttention(t)
        self.input_layernorm = RMSNorm(t.hidden, t.rms_eps)
        self.cross_attn_attn_gate = nn.Parameter(torch.zeros(1))
        self.mlp = MLP(t)
        self.post_attention_layernorm = RMSNorm(t.hidden, t.rms_eps)
        self.cross_attn_mlp_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x, k, v, bias, row_seen):
        x = x + self.cross_attn_attn_gate.tanh() * self.cross_attn(self.input_layernorm(x), k, v, bias)
        h = self.mlp(self.post_attention_layernorm(x)) * row_seen
        return x + self.cross_attn_mlp_gate.tanh() * h


class TextModel(nn.Module):
    def __init__(self, t: TextDims):
        super().__init__()
        self.embed_tokens = nn.Embedding(t.vocab + 8, t.hidden)
        self.layers = nn.ModuleList([CrossAttentionLayer(t) if i in t.cross_layers else SelfAttentionLayer(t) for i in range(t.layers)])
        self.norm = RMSNorm(t.hidden, t.rms_eps)


class LanguageModel(nn.Module):
    def __init__(self, t: TextDims):
        super().__init__()
        self.model = TextModel(t)
        self.lm_head = nn.Linear(t.hidden, t.vocab, bias=False)


class Mllama(nn.Module):
    """State dict names as on the hub: vision_model.…, multi_modal_projector.…, language_model.model.…, language_model.lm_head.…"""

    def __init__(self, config: dict):
        super().__init__()
        self.text, self.vis = dims_from_config(config)
        self.vision_model = VisionModel(self.vis)
        self.multi_modal_projector = nn.Linear(self.vis.output_dim, self.text.hidden)
        self.language_model = LanguageModel(self.text)
        self.register_buffer("inv_freq", rope_inv_freq(self.text), persistent=False)

    # ---- the pieces the sessions are made of

    def cross_key_values(self, pixel_values, aspect_ratio_ids, aspect_ratio_mask) -> list[torch.Tensor]:
        """Per cross-attention layer, in order: key, value [images, kv_heads, tiles x patches, head_dim]."""
        feats = self.vision_model(pixel_values, aspect_ratio_ids, aspect_ratio_mask)
        n = feats.shape[0]
        states = self.multi_modal_projector(feats).reshape(n, -1, self.text.hidden)
        out = []
        for i in self.text.cross_layers:
            out += list(self.language_model.model.layers[i].cross_attn.key_values(states))
        return out

    def rope(self, position_ids):
        freqs = position_ids.unsqueeze(-1).float() * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)

    def cross_bias(self, cross_attention_mask):
        """cross_attention_mask [B, T, tiles] (1 = the token sees that tile) -> the additive bias [B, 1, T, tiles x patches]
        and the row mask [B, T, 1] (0 where a token sees no tile). As transformers does, a row that sees no tile gets
        a zero bias (it attends to every tile) and only its MLP output is masked."""
        b, t, tiles = cross_attention_mask.shape
        m = cross_attention_mask.float().unsqueeze(-1).expand(b, t, tiles, self.vis.patches).reshape(b, t, tiles * self.vis.patches)
        row_seen = (m.sum(-1, keepdim=True) > 0).float()
        bias = (1 - m) * NEG * row_seen
        return bias.unsqueeze(1), row_seen

    def decode(self, inputs_embeds, attention_mask, position_ids, cross_attention_mask, past, cross, logits_to_keep=None):
        """One decoder pass. past: (k, v) per self-attention layer; cross: (k, v) per cross-attention layer;
        logits_to_keep: an int64 scalar, the last steps whose logits are returned (0 or None: every step).
        Returns logits and the self-attention layers' (k, v) grown by the new tokens."""
        seq = inputs_embeds.shape[1]
        total = attention_mask.shape[1]
        query_pos = torch.arange(seq) + (total - seq)
        causal = torch.arange(total).unsqueeze(0) <= query_pos.unsqueeze(1)
        keep = causal.unsqueeze(0).unsqueeze(0) & attention_mask.bool().unsqueeze(1).unsqueeze(1)
        bias = (~keep).float() * NEG
        cbias, row_seen = self.cross_bias(cross_attention_mask)
        cos, sin = self.rope(position_ids)
        x = inputs_embeds
        present = []
        s = c = 0
        for layer in self.language_model.model.layers:
            if isinstance(layer, CrossAttentionLayer):
                x = layer(x, cross[2 * c], cross[2 * c + 1], cbias, row_seen)
                c += 1
            else:
                x, k, v = layer(x, cos, sin, bias, past[2 * s], past[2 * s + 1])
                present += [k, v]
                s += 1
        if logits_to_keep is not None:
            # The LM head (vocab x hidden) costs more than the layers over a prompt: run it on the kept steps only.
            start = torch.clamp((seq - logits_to_keep) * (logits_to_keep > 0), min=0)
            x = x.index_select(1, torch.arange(start, seq))
        return self.language_model.lm_head(self.language_model.model.norm(x)), present

    def empty_past(self, batch: int) -> list[torch.Tensor]:
        t = self.text
        return [torch.zeros(batch, t.kv_heads, 0, t.head_dim) for _ in range(2 * len(t.self_layers))]

    @torch.no_grad()
    def forward_reference(self, input_ids, pixel_values, aspect_ratio_ids, aspect_ratio_mask, cross_attention_mask):
        """Logits of one whole sequence [1, T] with no cache (the check the exported graphs are held to)."""
        cross = self.cross_key_values(pixel_values, aspect_ratio_ids, aspect_ratio_mask)
        embeds = self.language_model.model.embed_tokens(input_ids)
        t = input_ids.shape[1]
        logits, _ = self.decode(
            embeds, torch.ones(1, t, dtype=torch.long), torch.arange(t).unsqueeze(0), cross_attention_mask, self.empty_past(1), cross
        )
        return logits


# --------------------------------------------------------------------------- the sessions


class VisionExport(nn.Module):
    def __init__(self, model: Mllama):
        super().__init__()
        self.model = model

    def forward(self, pixel_values, aspect_ratio_ids, aspect_ratio_mask):
        return tuple(self.model.cross_key_values(pixel_values, aspect_ratio_ids, aspect_ratio_mask))


class EmbedExport(nn.Module):
    def __init__(self, model: Mllama):
        super().__init__()
        self.embed = model.language_model.model.embed_tokens

    def forward(self, input_ids):
        return self.embed(input_ids)


class DecoderExport(nn.Module):
    def __init__(self, model: Mllama):
        super().__init__()
        self.model = model
        self.n_self = len(model.text.self_layers)

    def forward(self, inputs_embeds, attention_mask, position_ids, cross_attention_mask, logits_to_keep, *kv):
        past, cross = kv[: 2 * self.n_self], kv[2 * self.n_self :]
        logits, present = self.model.decode(
            inputs_embeds, attention_mask, position_ids, cross_attention_mask, past, cross, logits_to_keep
        )
        return (logits, *present)
