"""stagebeam-tiny: a small vision-language model trained on synthetic scenes.

Layout (the model folder contract of workers/engine/README.md):

* VisionEncoder: pixel_values [B,3,128,128] (already normalised) -> image_features [B,64,D].
  A conv+GELU stem (He-initialised) brings 128x128 down to an 8x8 grid of patch vectors,
  ordered column by column (captions list objects left to right) and layer-normalised, then
  a learned position embedding, two pre-LN transformer encoder layers, and a 2-layer MLP
  projector to the decoder width D. A training-only cell head classifies each grid cell.
* embed_tokens: nn.Embedding(V, D).
* Decoder: pre-LN decoder-only transformer with rotary position embeddings driven by
  position_ids, multi-head attention (grouped-query when num_key_value_heads is set), a KV
  cache, and an untied LM head.

Attention masking (decoder): `attention_mask` [B, P+T] marks real (1) vs padded (0)
positions over past+current; it is combined with causality over the cache index, so a query
at current index j (absolute cache index P+j) sees cache positions k <= P+j whose mask is 1.
Masked scores get a large finite negative value (not -inf) so fully padded rows stay finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, asdict, field
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

NEG = -1e9


@dataclass
class ModelConfig:
    vocab_size: int = 300
    hidden_size: int = 192
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    # 0: as many key/value heads as attention heads; fewer: grouped-query attention
    num_key_value_heads: int = 0
    intermediate_size: int = 768
    # "gelu": fc2(gelu(fc1 x)); "swiglu": fc2(silu(gate x) * up x), gate and up fused in fc1
    mlp: str = "gelu"
    max_position_embeddings: int = 512
    # vision
    image_size: int = 128
    vision_hidden_size: int = 192
    vision_layers: int = 2
    vision_heads: int = 4
    vision_intermediate_size: int = 768
    stem_channels: Tuple[int, ...] = (32, 64, 128)
    grid: int = 8
    # "he": Kaiming-normal conv weights, so the signal survives the 7-layer stem (PyTorch's
    # default init shrinks it until image features are ~0.1% image-dependent)
    vision_init: str = "default"
    # LayerNorm over each patch vector after the stem
    patch_norm: bool = False
    # order of the 64 image tokens: "row" (row by row) or "column" (column by column, which
    # matches captions listing objects left to right)
    token_order: str = "row"
    # > 0: a training-only head classifying what each grid cell holds (see DATA_FORMAT.md)
    cell_classes: int = 0
    # the verifier's own reading of the picture: the cell head becomes part of the vision encoder
    # and every image token also carries the embedding of the object its cell holds, weighted by
    # the head's probabilities (exported; needs cell_classes)
    object_tokens: bool = False
    # > 0: a training-only head on the residual stream after this decoder layer that marks,
    # at the clause ends of judge candidates, the clause holding the wrong one's first mistake
    judge_token_layer: int = 0
    # > 0: during training, head 0 of this decoder layer is taught to look, from the last word
    # of a named object ("a large yellow triangle"), at the image tokens holding that object
    ground_layer: int = 0
    # special ids (filled from meta.json)
    image_token_id: int = 6
    bos_token_id: int = 2
    eos_token_id: int = 3
    pad_token_id: int = 1
    dropout: float = 0.0
    # "rope": rotary position embedding on q/k in the decoder (driven by position_ids);
    # "learned": learned absolute position embedding added to inputs_embeds
    pos_type: str = "rope"
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def image_seq_length(self) -> int:
        return self.grid * self.grid

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stem_channels"] = list(self.stem_channels)
        return d

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        d = dict(d)
        d.setdefault("pos_type", "learned")  # checkpoints written before the option existed
        if "stem_channels" in d:
            d["stem_channels"] = tuple(d["stem_channels"])
        return ModelConfig(**d)


# --------------------------------------------------------------------------- vision


class EncoderLayer(nn.Module):
    """Pre-LN bidirectional transformer layer (vision side)."""

    def __init__(self, dim: int, heads: int, inter: int):
        super().__init__()
        self.heads = heads
        self.hd = dim // heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, inter)
        self.fc2 = nn.Linear(inter, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        h = self.ln1(x)
        qkv = self.qkv(h).reshape(B, N, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))
        att = att.softmax(dim=-1)
        o = torch.matmul(att, v).transpose(1, 2).reshape(B, N, C)
        x = x + self.out(o)
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return x


class VisionEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c1, c2, c3 = cfg.stem_channels
        cv = cfg.vision_hidden_size
        # 128 -> 64 -> 32 -> 16 -> 8, with a stride-1 conv at each of 64/32/16 for capacity.
        self.stem = nn.Sequential(
            nn.Conv2d(3, c1, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c1, c1, 3, stride=1, padding=1), nn.GELU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c2, c2, 3, stride=1, padding=1), nn.GELU(),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(c3, c3, 3, stride=1, padding=1), nn.GELU(),
            nn.Conv2d(c3, cv, 3, stride=2, padding=1),
        )
        if cfg.vision_init == "he":
            for m in self.stem:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        self.column_major = cfg.token_order == "column"
        self.patch_norm = nn.LayerNorm(cv) if cfg.patch_norm else None
        n = cfg.grid * cfg.grid
        self.pos = nn.Parameter(torch.zeros(1, n, cv))
        nn.init.normal_(self.pos, std=0.02)
        self.layers = nn.ModuleList(
            [EncoderLayer(cv, cfg.vision_heads, cfg.vision_intermediate_size) for _ in range(cfg.vision_layers)]
        )
        self.ln_f = nn.LayerNorm(cv)
        self.proj1 = nn.Linear(cv, cfg.hidden_size)
        self.proj2 = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        if cfg.object_tokens:
            if not cfg.cell_classes:
                raise ValueError("object_tokens needs cell_classes (the object each cell holds)")
            self.cell_head = nn.Linear(cv, cfg.cell_classes)
            self.object_embed = nn.Parameter(torch.zeros(cfg.cell_classes, cfg.hidden_size))
        else:
            self.cell_head = None

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """-> [B,64,Cv] grid features in token order, before the projector."""
        x = self.stem(pixel_values)  # [B,C,8,8] = [B,C,row,col]
        if self.column_major:
            x = x.transpose(2, 3)
        x = x.flatten(2).transpose(1, 2)  # [B,64,C]
        if self.patch_norm is not None:
            x = self.patch_norm(x)
        x = x + self.pos
        for layer in self.layers:
            x = layer(x)
        return self.ln_f(x)

    def project(self, grid_features: torch.Tensor) -> torch.Tensor:
        feats = self.proj2(F.gelu(self.proj1(grid_features)))
        if self.cell_head is not None:
            feats = feats + self.cell_head(grid_features).softmax(-1) @ self.object_embed
        return feats

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.project(self.encode(pixel_values))


# --------------------------------------------------------------------------- decoder


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.hidden_size
        self.h = cfg.num_attention_heads
        self.kvh = cfg.kv_heads
        self.hd = cfg.head_dim
        self.swiglu = cfg.mlp == "swiglu"
        self.ln1 = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, self.kvh * self.hd)
        self.v = nn.Linear(d, self.kvh * self.hd)
        self.o = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, (2 if self.swiglu else 1) * cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        allowed: torch.Tensor,
        past_k: Optional[torch.Tensor],
        past_v: Optional[torch.Tensor],
        rope: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        att_out: Optional[List[torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, D = x.shape
        h = self.ln1(x)
        q = self.q(h).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.kvh, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.kvh, self.hd).transpose(1, 2)
        if rope is not None:
            q = apply_rope(q, *rope)
            k = apply_rope(k, *rope)
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        # grouped-query: query heads g·j … g·j+g-1 share key/value head j, which is not copied
        g = self.h // self.kvh
        att = torch.matmul(q.reshape(B, self.kvh, g * T, self.hd), k.transpose(-1, -2)) * (1.0 / math.sqrt(self.hd))
        att = att.view(B, self.h, T, -1).masked_fill(~allowed, NEG)
        att = att.softmax(dim=-1)
        if att_out is not None:
            att_out.append(att)
        o = torch.matmul(att.view(B, self.kvh, g * T, -1), v).view(B, self.h, T, self.hd)
        o = o.transpose(1, 2).reshape(B, T, D)
        x = x + self.drop(self.o(o))
        x = x + self.drop(self.fc2(self.activation(self.fc1(self.ln2(x)))))
        return x, k, v

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        if not self.swiglu:
            return F.gelu(h)
        gate, up = h.chunk(2, dim=-1)
        return F.silu(gate) * up


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B,H,T,d]; cos/sin [B,1,T,d]."""
    return x * cos + rotate_half(x) * sin


def build_allowed(attention_mask: torch.Tensor, T: int, S: int, device=None) -> torch.Tensor:
    """[B,S] padding mask -> [B,1,T,S] bool, combined with causality over the cache index."""
    P = S - T
    q_idx = torch.arange(T, device=attention_mask.device) + P
    k_idx = torch.arange(S, device=attention_mask.device)
    causal = k_idx.unsqueeze(0) <= q_idx.unsqueeze(1)  # [T,S]
    pad = attention_mask.bool().unsqueeze(1).unsqueeze(2)  # [B,1,1,S]
    return causal.unsqueeze(0).unsqueeze(0) & pad


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.pos_type == "learned":
            self.pos = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        else:
            hd = cfg.head_dim
            inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
            t = torch.arange(cfg.max_position_embeddings, dtype=torch.float32)
            f = torch.outer(t, inv)
            emb = torch.cat([f, f], dim=-1)
            self.register_buffer("rope_cos", emb.cos(), persistent=False)
            self.register_buffer("rope_sin", emb.sin(), persistent=False)
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.ln_f = nn.LayerNorm(cfg.hidden_size)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def hidden(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: Optional[List[Tuple[torch.Tensor, torch.Tensor]]] = None,
        taps: Optional[List[torch.Tensor]] = None,
        att_taps: Optional[List[torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, List[Tuple[torch.Tensor, torch.Tensor]]]:
        """-> (final hidden states, presents); `taps`, when given, receives the residual stream
        after every layer, `att_taps` every layer's attention probabilities [B,H,T,S]."""
        T = inputs_embeds.shape[1]
        S = attention_mask.shape[1]
        allowed = build_allowed(attention_mask, T, S)
        if self.cfg.pos_type == "learned":
            x = inputs_embeds + self.pos(position_ids)
            rope = None
        else:
            x = inputs_embeds
            rope = (self.rope_cos[position_ids].unsqueeze(1), self.rope_sin[position_ids].unsqueeze(1))
        presents = []
        for i, layer in enumerate(self.layers):
            pk, pv = (past[i] if past is not None else (None, None))
            x, k, v = layer(x, allowed, pk, pv, rope, att_taps)
            presents.append((k, v))
            if taps is not None:
                taps.append(x)
        return self.ln_f(x), presents

    def forward(self, inputs_embeds, attention_mask, position_ids, past=None):
        h, presents = self.hidden(inputs_embeds, attention_mask, position_ids, past)
        return self.lm_head(h), presents


class StagebeamTiny(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.vision = VisionEncoder(cfg)
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.decoder = Decoder(cfg)
        if cfg.object_tokens:
            self.cell_head = self.vision.cell_head  # the exported head that object tokens read
        else:
            self.cell_head = nn.Linear(cfg.vision_hidden_size, cfg.cell_classes) if cfg.cell_classes else None
        self.judge_token_head = nn.Linear(cfg.hidden_size, 2) if cfg.judge_token_layer else None
        self.apply(self._init)
        # scale residual output projections (GPT-2 style)
        for layer in self.decoder.layers:
            nn.init.normal_(layer.o.weight, std=0.02 / math.sqrt(2 * cfg.num_hidden_layers))
            nn.init.normal_(layer.fc2.weight, std=0.02 / math.sqrt(2 * cfg.num_hidden_layers))

    @staticmethod
    def _init(m: nn.Module):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def merge_embeds(self, input_ids: torch.Tensor, pixel_values: Optional[torch.Tensor]) -> torch.Tensor:
        return self.merge_embeds_with_grid(input_ids, pixel_values)[0]

    def merge_embeds_with_grid(
        self, input_ids: torch.Tensor, pixel_values: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Token embeddings with the image-token positions replaced by image features
        (row-major over the batch, exactly image_seq_length per row holding an image), and
        the vision grid features they came from (for the training-only cell head)."""
        emb = self.embed_tokens(input_ids)
        if pixel_values is None:
            return emb, None
        grid = self.vision.encode(pixel_values)
        feats = self.vision.project(grid)  # [B,64,D]
        is_img = input_ids == self.cfg.image_token_id
        n = int(is_img.sum())
        if n != feats.shape[0] * feats.shape[1]:
            raise ValueError(f"image tokens ({n}) != image features ({feats.shape[0] * feats.shape[1]})")
        emb = emb.clone()
        emb[is_img] = feats.reshape(-1, feats.shape[-1]).to(emb.dtype)
        return emb, grid

    def forward(self, input_ids, pixel_values, attention_mask, position_ids=None, past=None):
        emb = self.merge_embeds(input_ids, pixel_values)
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask)[:, -input_ids.shape[1]:]
        return self.decoder(emb, attention_mask, position_ids, past)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for left- or right-padded rows: cumsum(mask) - 1, clamped at 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def cell_targets(cells: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """[B, grid*grid] row-major cell labels -> the vision encoder's token order."""
    if cfg.token_order == "column":
        g = cfg.grid
        return cells.view(-1, g, g).transpose(1, 2).reshape(-1, g * g)
    return cells


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def load_checkpoint(path: str) -> Tuple[StagebeamTiny, dict]:
    ck = torch.load(path, map_location="cpu")
    cfg = ModelConfig.from_dict(ck["config"])
    model = StagebeamTiny(cfg)
    model.load_state_dict(ck["model"])
    model.eval()
    return model, ck
