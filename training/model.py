"""Head (per-modality towers + fusion MLP + MDN), field tables and the integrated likelihood."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .config import IMAGE_DIM, MDN_K, TEXT_DIM
from .fields import FieldSpec


class Head(nn.Module):
    """Exported alone as head.onnx. Inputs are exactly what the server assembles."""

    def __init__(self, img_mean: np.ndarray, img_std: np.ndarray, fields_dim: int, k: int = MDN_K,
                 hidden: int = 256, dropout: float = 0.2, item_cols: list[int] | None = None,
                 interact: int = 0, img_dropout: float | None = None):
        super().__init__()
        self.k = k
        self.register_buffer("img_mean", torch.as_tensor(img_mean, dtype=torch.float32))
        self.register_buffer("img_inv_std", torch.as_tensor(1.0 / img_std, dtype=torch.float32))
        img_dropout = dropout if img_dropout is None else img_dropout
        self.img = nn.Sequential(nn.Dropout(img_dropout), nn.Linear(IMAGE_DIM, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.txt = nn.Sequential(nn.Linear(TEXT_DIM, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.fld = nn.Sequential(nn.Linear(fields_dim, 128), nn.ReLU())
        # Context x item interactions (what the world's CTR mostly varies by: a segment or site likes
        # some topics): an item vector from the item's towers and item fields, a context vector from
        # the context fields, and their elementwise product into the fusion MLP (a factorised
        # bilinear term, which a ReLU MLP on the concatenation learns only slowly).
        self.interact = interact if item_cols is not None and 0 < len(item_cols) < fields_dim else 0
        if self.interact:
            ctx_cols = sorted(set(range(fields_dim)) - set(item_cols))
            self.register_buffer("item_cols", torch.as_tensor(item_cols, dtype=torch.long))
            self.register_buffer("ctx_cols", torch.as_tensor(ctx_cols, dtype=torch.long))
            self.item_vec = nn.Sequential(nn.Linear(32 + 32 + len(item_cols), 64), nn.ReLU(), nn.Linear(64, interact))
            self.ctx_vec = nn.Linear(len(ctx_cols), interact)
        self.fuse = nn.Sequential(nn.Linear(32 + 1 + 32 + 1 + 128 + self.interact, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, 128), nn.ReLU())
        self.out = nn.Linear(128, 3 * k)
        # Spread temperature, fitted after training on the calibration split (held-out NLL): the
        # whole z-mixture is widened around its mean, mu_k -> m + tau (mu_k - m), sigma_k -> tau sigma_k.
        self.register_buffer("spread_tau", torch.ones(()))
        with torch.no_grad():
            self.out.bias[k:2 * k] = torch.linspace(-4.2, -3.2, k)
            self.out.bias[2 * k:] = -0.5

    def forward(self, image_emb, image_oov, text_emb, text_oov, fields_emb):
        i = self.img((image_emb - self.img_mean) * self.img_inv_std)
        t = self.txt(text_emb)
        f = self.fld(fields_emb)
        parts = [i, image_oov, t, text_oov, f]
        if self.interact:
            u = self.item_vec(torch.cat([i, t, fields_emb.index_select(1, self.item_cols)], dim=1))
            parts.append(u * self.ctx_vec(fields_emb.index_select(1, self.ctx_cols)))
        h = self.fuse(torch.cat(parts, dim=1))
        o = self.out(h)
        k = self.k
        pi = torch.softmax(o[:, :k], dim=1)
        mu = o[:, k:2 * k]
        sigma = nn.functional.softplus(o[:, 2 * k:]) + 0.01
        m = (pi * mu).sum(dim=1, keepdim=True)
        return pi, m + self.spread_tau * (mu - m), self.spread_tau * sigma


class FieldTables(nn.Module):
    """One embedding table per field; multi-valued fields average their rows (duplicates count)."""

    def __init__(self, fields: list[FieldSpec], rows: dict[str, int]):
        super().__init__()
        self.fields = fields
        # Keyed by position: field names may hold '.', which ModuleDict keys may not.
        self.tables = nn.ModuleList([nn.Embedding(rows[f.name], f.dim) for f in fields])
        for t in self.tables:
            nn.init.normal_(t.weight, 0, 0.1)

    def forward(self, ids: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for f, table in zip(self.fields, self.tables):
            x = ids[f.name]
            if f.multi:  # x: [B, T] rows, -1 = no value (padding)
                valid = (x >= 0).to(torch.float32)
                e = table(x.clamp(min=0)) * valid.unsqueeze(-1)
                parts.append(e.sum(1) / valid.sum(1, keepdim=True).clamp(min=1.0))
            else:
                parts.append(table(x))
        return torch.cat(parts, dim=1)

    def export_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: t.weight.detach().cpu().numpy().astype(np.float32) for f, t in zip(self.fields, self.tables)}


def mixture_binomial_nll(pi, mu, sigma, clicks, impressions, nodes, weights) -> torch.Tensor:
    """-log ∫ Binomial(c | n, sigmoid(z)) dF(z), F = sum_k pi_k N(mu_k, sigma_k^2), Gauss–Hermite
    in z for every component. Per row, including log C(n, c)."""
    x = torch.as_tensor(nodes, dtype=mu.dtype, device=mu.device)
    lw = torch.log(torch.as_tensor(weights, dtype=mu.dtype, device=mu.device)) - 0.5 * math.log(math.pi)
    z = mu.unsqueeze(-1) + math.sqrt(2.0) * sigma.unsqueeze(-1) * x          # [B, K, Q]
    c = clicks.to(mu.dtype)[:, None, None]
    n = impressions.to(mu.dtype)[:, None, None]
    ll = c * nn.functional.logsigmoid(z) + (n - c) * nn.functional.logsigmoid(-z)
    ll = ll + lw + torch.log(pi.clamp_min(1e-12)).unsqueeze(-1)
    lse = torch.logsumexp(ll.reshape(ll.shape[0], -1), dim=1)
    logc = torch.lgamma(n[:, 0, 0] + 1) - torch.lgamma(c[:, 0, 0] + 1) - torch.lgamma(n[:, 0, 0] - c[:, 0, 0] + 1)
    return -(lse + logc)
