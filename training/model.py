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
                 hidden: int = 256, dropout: float = 0.2):
        super().__init__()
        self.k = k
        self.register_buffer("img_mean", torch.as_tensor(img_mean, dtype=torch.float32))
        self.register_buffer("img_inv_std", torch.as_tensor(1.0 / img_std, dtype=torch.float32))
        self.img = nn.Sequential(nn.Dropout(dropout), nn.Linear(IMAGE_DIM, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.txt = nn.Sequential(nn.Linear(TEXT_DIM, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.fld = nn.Sequential(nn.Linear(fields_dim, 128), nn.ReLU())
        self.fuse = nn.Sequential(nn.Linear(32 + 1 + 32 + 1 + 128, hidden), nn.ReLU(), nn.Dropout(dropout),
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
        h = self.fuse(torch.cat([i, image_oov, t, text_oov, f], dim=1))
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
