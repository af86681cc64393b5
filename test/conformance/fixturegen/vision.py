"""Tiny vision towers with each family's ONNX vision_encoder contract (input names, shapes, image_features layout)."""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class VisionDims:
    hidden: int = 32
    heads: int = 2
    layers: int = 2
    intermediate: int = 64
    patch: int = 8
    image: int = 32


def projector(fan_in: int, fan_out: int, bias: bool = True) -> nn.Linear:
    """A projection into the text stream, initialised so image features are as loud as token embeddings (std ~1):
    with PyTorch's default init they would be ~0.2 and a random decoder would all but ignore the image."""
    layer = nn.Linear(fan_in, fan_out, bias=bias)
    nn.init.normal_(layer.weight, std=2 * fan_in**-0.5)
    return layer


def patch_conv(patch: int, hidden: int, bias: bool) -> nn.Conv2d:
    """Patch embedding loud enough that the pixels, not the position table, dominate what the tower sees."""
    conv = nn.Conv2d(3, hidden, patch, patch, bias=bias)
    nn.init.normal_(conv.weight, std=(3 * patch * patch) ** -0.5)
    return conv


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class EncoderLayer(nn.Module):
    """Pre-LayerNorm transformer block (CLIP / SigLIP / Qwen2-VL vision share this shape)."""

    def __init__(self, dims: VisionDims, act, eps: float):
        super().__init__()
        self.dims = dims
        self.norm1 = nn.LayerNorm(dims.hidden, eps=eps)
        self.qkv = nn.Linear(dims.hidden, 3 * dims.hidden)
        self.proj = nn.Linear(dims.hidden, dims.hidden)
        self.norm2 = nn.LayerNorm(dims.hidden, eps=eps)
        self.fc1 = nn.Linear(dims.hidden, dims.intermediate)
        self.fc2 = nn.Linear(dims.intermediate, dims.hidden)
        self.act = act

    def forward(self, x, bias, rotary=None):
        """x [batch, seq, hidden]; bias broadcastable to [batch, heads, seq, seq]; rotary (cos, sin) [seq, head_dim]."""
        b, s, c = x.shape
        h = self.dims.heads
        d = c // h
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, h, d).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            cos, sin = rotary
            half = d // 2
            q = q * cos + torch.cat([-q[..., half:], q[..., :half]], -1) * sin
            k = k * cos + torch.cat([-k[..., half:], k[..., :half]], -1) * sin
        attn = (q @ k.transpose(-1, -2) / d**0.5 + bias).softmax(-1) @ v
        x = x + self.proj(attn.transpose(1, 2).reshape(b, s, c))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class LlavaVision(nn.Module):
    """CLIP ViT + LLaVA projector. pixel_values [batch, 3, S, S] -> image_features [batch, (S/p)^2, text_hidden].
    Features come from hidden_states[vision_feature_layer=-2] with the CLS row dropped ("default" strategy)."""

    def __init__(self, dims: VisionDims, text_hidden: int):
        super().__init__()
        self.patch_embedding = patch_conv(dims.patch, dims.hidden, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(dims.hidden))
        self.position_embedding = nn.Parameter(0.1 * torch.randn((dims.image // dims.patch) ** 2 + 1, dims.hidden))
        self.pre_layrnorm = nn.LayerNorm(dims.hidden)
        self.layers = nn.ModuleList([EncoderLayer(dims, quick_gelu, 1e-5) for _ in range(dims.layers)])
        self.linear_1 = nn.Linear(dims.hidden, text_hidden)
        self.linear_2 = projector(text_hidden, text_hidden)

    def forward(self, pixel_values):
        x = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.pre_layrnorm(torch.cat([cls, x], 1) + self.position_embedding)
        hidden_states = [x]
        for layer in self.layers:
            x = layer(x, 0.0)
            hidden_states.append(x)
        selected = hidden_states[-2][:, 1:]
        return self.linear_2(nn.functional.gelu(self.linear_1(selected)))


class Idefics3Vision(nn.Module):
    """SigLIP-style tower + pixel-shuffle connector.
    pixel_values [batch, num_images, 3, S, S] float, pixel_attention_mask [batch, num_images, S, S] bool
    -> image_features [num_real_images, (S/p)^2 / scale^2, text_hidden]; all-zero (padding) images are dropped."""

    def __init__(self, dims: VisionDims, text_hidden: int, scale_factor: int):
        super().__init__()
        self.dims = dims
        self.scale = scale_factor
        self.patch_embedding = patch_conv(dims.patch, dims.hidden, bias=True)
        self.position_embedding = nn.Parameter(0.1 * torch.randn((dims.image // dims.patch) ** 2, dims.hidden))
        gelu_tanh = lambda x: nn.functional.gelu(x, approximate="tanh")  # noqa: E731
        self.layers = nn.ModuleList([EncoderLayer(dims, gelu_tanh, 1e-6) for _ in range(dims.layers)])
        self.post_layernorm = nn.LayerNorm(dims.hidden, eps=1e-6)
        self.modality_projection = projector(dims.hidden * scale_factor**2, text_hidden, bias=False)

    def forward(self, pixel_values, pixel_attention_mask):
        p, s = self.dims.patch, self.dims.image
        pv = pixel_values.flatten(0, 1)
        mask = pixel_attention_mask.flatten(0, 1)
        real = (pv != 0).flatten(1).any(1)
        pv, mask = pv[real], mask[real]
        n = s // p
        patch_mask = mask.view(-1, n, p, n, p).float().sum((2, 4)).flatten(1) > 0
        bias = (~patch_mask).float().unsqueeze(1).unsqueeze(1) * torch.finfo(torch.float32).min
        x = self.patch_embedding(pv).flatten(2).transpose(1, 2) + self.position_embedding
        for layer in self.layers:
            x = layer(x, bias)
        x = self.post_layernorm(x)
        return self.modality_projection(self.pixel_shuffle(x))

    def pixel_shuffle(self, x):
        c = x.shape[-1]
        n, r = self.dims.image // self.dims.patch, self.scale
        x = x.reshape(-1, n, n // r, c * r).permute(0, 2, 1, 3)
        x = x.reshape(-1, n // r, n // r, c * r * r).permute(0, 2, 1, 3)
        return x.reshape(-1, (n // r) ** 2, c * r * r)


class Qwen2VLVision(nn.Module):
    """Qwen2-VL ViT with 2-D rotary positions and the 2x2 patch merger.
    pixel_values [num_patches, 3 * temporal * p * p], grid_thw [num_images, 3] int64
    -> image_features [num_patches / merge^2, text_hidden]; attention stays within each image."""

    def __init__(self, dims: VisionDims, text_hidden: int, temporal: int, merge: int):
        super().__init__()
        self.dims = dims
        self.merge = merge
        self.patch_embed = projector(3 * temporal * dims.patch**2, dims.hidden, bias=False)
        head_dim = dims.hidden // dims.heads
        rot = head_dim // 2
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, rot, 2).float() / rot)), persistent=False)
        self.blocks = nn.ModuleList([EncoderLayer(dims, quick_gelu, 1e-6) for _ in range(dims.layers)])
        wide = dims.hidden * merge**2
        self.ln_q = nn.LayerNorm(dims.hidden, eps=1e-6)
        self.mlp_0 = nn.Linear(wide, wide)
        self.mlp_2 = projector(wide, text_hidden)

    def positions(self, n_patches, grid_thw):
        """(row, col) of each patch, recovered from the processor's merge-window patch order."""
        m = self.merge
        sizes = grid_thw.prod(-1)
        ends = sizes.cumsum(0)
        pid = torch.arange(n_patches)
        image = (pid.unsqueeze(1) >= ends.unsqueeze(0)).long().sum(1)
        local = pid - (ends - sizes)[image]
        h, w = grid_thw[:, 1][image], grid_thw[:, 2][image]
        local = local % (h * w)
        block = torch.div(local, m * m, rounding_mode="floor")
        blocks_per_row = torch.div(w, m, rounding_mode="floor")
        row = torch.div(block, blocks_per_row, rounding_mode="floor") * m + torch.div(local, m, rounding_mode="floor") % m
        col = (block % blocks_per_row) * m + local % m
        return image, row, col

    def forward(self, pixel_values, grid_thw):
        image, row, col = self.positions(pixel_values.shape[0], grid_thw)
        freqs = torch.cat([row.unsqueeze(1).float() * self.inv_freq, col.unsqueeze(1).float() * self.inv_freq], -1)
        emb = torch.cat([freqs, freqs], -1)
        rotary = (emb.cos(), emb.sin())
        same_image = image.unsqueeze(0) == image.unsqueeze(1)
        bias = (~same_image).float() * torch.finfo(torch.float32).min
        x = self.patch_embed(pixel_values).unsqueeze(0)
        for block in self.blocks:
            x = block(x, bias, rotary)
        x = self.ln_q(x[0]).reshape(-1, self.dims.hidden * self.merge**2)
        return self.mlp_2(nn.functional.gelu(self.mlp_0(x)))
