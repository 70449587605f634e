"""Training: stage 1 trains the text encoder jointly with the head, stage 2 freezes it and
trains the head (plus field tables and OOV vectors) on cached embeddings."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import GH_TRAIN_NODES, IMAGE_DIM, TEXT_DIM, TrainConfig
from .encoders import TextEncoder
from .fields import FieldSpec
from .model import FieldTables, Head, mixture_binomial_nll


@dataclass
class Data:
    """Everything indexed by item (i_*) or by row (r_*)."""
    i_img: torch.Tensor                  # [N_items, 1280] frozen image features
    i_ids: torch.Tensor                  # [N_items, L] token ids, right padded
    i_mask: torch.Tensor                 # [N_items, L]
    i_has_title: torch.Tensor            # [N_items] bool
    i_has_image: torch.Tensor            # [N_items] bool: False = no image or it could not be fetched (OOV)
    i_fields: dict[str, torch.Tensor]    # item-scope field rows
    r_item: torch.Tensor                 # [R]
    r_fields: dict[str, torch.Tensor]    # context-scope field rows
    r_n: torch.Tensor
    r_c: torch.Tensor
    r_split: torch.Tensor                # 0 train, 1 calibration, 2 test, 3 validation (early stopping)


def item_columns(fields: list[FieldSpec]) -> list[int]:
    """Positions of the item-scope fields' values in fields_emb (fields concatenated in spec order)."""
    cols, at = [], 0
    for f in fields:
        if f.scope == "item":
            cols += range(at, at + f.dim)
        at += f.dim
    return cols


class CTRModel(nn.Module):
    def __init__(self, vocab: int, fields: list[FieldSpec], table_rows: dict[str, int], img_mean, img_std,
                 **head_opts):
        super().__init__()
        self.text = TextEncoder(vocab)
        self.tables = FieldTables(fields, table_rows)
        self.head = Head(img_mean, img_std, sum(f.dim for f in fields), item_cols=item_columns(fields), **head_opts)
        self.oov_image = nn.Parameter(torch.as_tensor(img_mean, dtype=torch.float32).clone())
        self.oov_text = nn.Parameter(torch.zeros(TEXT_DIM))
        self.text_cache: torch.Tensor | None = None   # set once the text encoder is frozen

    def text_emb(self, data: Data, items: torch.Tensor) -> torch.Tensor:
        if self.text_cache is not None:
            return self.text_cache[items]
        uniq, inv = torch.unique(items, return_inverse=True)
        ids, mask = data.i_ids[uniq], data.i_mask[uniq]
        L = int(mask.sum(1).max().clamp(min=1))
        return self.text(ids[:, :L], mask[:, :L])[inv]

    def field_ids(self, data: Data, rows: torch.Tensor, items: torch.Tensor, drop: float,
                  gen: torch.Generator | None) -> dict[str, torch.Tensor]:
        ids = {}
        for f in self.tables.fields:
            x = data.i_fields[f.name][items] if f.scope == "item" else data.r_fields[f.name][rows]
            if drop > 0:
                d = torch.rand(len(rows), generator=gen) < drop
                if f.multi:
                    empty = torch.full_like(x, -1)
                    empty[:, 0] = 0
                    x = torch.where(d[:, None], empty, x)
                else:
                    x = torch.where(d, torch.zeros_like(x), x)
            ids[f.name] = x
        return ids

    def forward(self, data: Data, rows: torch.Tensor, img_oov: torch.Tensor, txt_oov: torch.Tensor,
                drop: float = 0.0, gen: torch.Generator | None = None):
        items = data.r_item[rows]
        img_oov = (img_oov | ~data.i_has_image[items]).float()[:, None]
        txt_oov = (txt_oov | ~data.i_has_title[items]).float()[:, None]
        img = data.i_img[items] * (1 - img_oov) + self.oov_image * img_oov
        txt = self.text_emb(data, items) * (1 - txt_oov) + self.oov_text * txt_oov
        fields = self.tables(self.field_ids(data, rows, items, drop, gen))
        return self.head(img, img_oov, txt, txt_oov, fields)

    @torch.no_grad()
    def freeze_text(self, data: Data, batch: int = 2048) -> None:
        self.text.eval()
        for p in self.text.parameters():
            p.requires_grad_(False)
        out = []
        for i in range(0, len(data.i_ids), batch):
            ids, mask = data.i_ids[i:i + batch], data.i_mask[i:i + batch]
            L = int(mask.sum(1).max().clamp(min=1))
            out.append(self.text(ids[:, :L], mask[:, :L]))
        self.text_cache = torch.cat(out)


class _Ema:
    """Exponential moving average of the trained parameters: the weights that are validated, kept
    and exported. Averaging over the last few hundred steps removes most of the step-to-step noise
    of the item and interaction estimates, which held-out items otherwise pay for."""

    def __init__(self, params, decay: float):
        self.params, self.decay = params, decay
        self.avg = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.avg, [p.detach() for p in self.params], 1.0 - self.decay)

    @torch.no_grad()
    def swap(self) -> None:
        for p, a in zip(self.params, self.avg):
            t = p.detach().clone()
            p.copy_(a)
            a.copy_(t)


def _run_epochs(model: CTRModel, data: Data, rows: torch.Tensor, epochs: int, cfg: TrainConfig,
                params, lr: float, seed: int, log, tag: str, valid_rows: torch.Tensor) -> None:
    gh_x, gh_w = np.polynomial.hermite.hermgauss(GH_TRAIN_NODES)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    steps = epochs * math.ceil(len(rows) / cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    ema = _Ema(params, cfg.ema) if cfg.ema > 0 else None
    best = (float("inf"), None, -1)
    for ep in range(epochs):
        model.train()
        t0, tot, cnt = time.time(), 0.0, 0
        perm = rows[torch.randperm(len(rows), generator=gen)]
        for s in range(0, len(perm), cfg.batch):
            b = perm[s:s + cfg.batch]
            io = torch.rand(len(b), generator=gen) < cfg.oov_image
            to = torch.rand(len(b), generator=gen) < cfg.oov_text
            pi, mu, sigma = model(data, b, io, to, cfg.field_drop, gen)
            loss = mixture_binomial_nll(pi, mu, sigma, data.r_c[b], data.r_n[b], gh_x, gh_w).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update()
            tot += float(loss.detach()) * len(b)
            cnt += len(b)
        if ema is not None:
            ema.swap()  # validate (and keep) the averaged weights
        v = evaluate_nll(model, data, valid_rows)
        if v < best[0]:
            best = (v, copy.deepcopy(model.state_dict()), ep + 1)
        if ema is not None:
            ema.swap()
        log(f"[{tag}] epoch {ep + 1}/{epochs}: train nll {tot / cnt:.4f}  validation nll {v:.4f}  ({time.time() - t0:.0f}s)")
    if best[1] is not None:
        model.load_state_dict(best[1])
        log(f"[{tag}] keeping epoch {best[2]} (validation nll {best[0]:.4f})")


@torch.no_grad()
def evaluate_nll(model: CTRModel, data: Data, rows: torch.Tensor, batch: int = 8192) -> float:
    model.eval()
    gh_x, gh_w = np.polynomial.hermite.hermgauss(GH_TRAIN_NODES)
    tot = 0.0
    for s in range(0, len(rows), batch):
        b = rows[s:s + batch]
        z = torch.zeros(len(b), dtype=torch.bool)
        pi, mu, sigma = model(data, b, z, z)
        tot += float(mixture_binomial_nll(pi, mu, sigma, data.r_c[b], data.r_n[b], gh_x, gh_w).sum())
    return tot / max(len(rows), 1)


@torch.no_grad()
def predict(model: CTRModel, data: Data, rows: torch.Tensor, img_oov: bool = False, txt_oov: bool = False,
            batch: int = 8192):
    model.eval()
    outs = []
    for s in range(0, len(rows), batch):
        b = rows[s:s + batch]
        io = torch.full((len(b),), img_oov, dtype=torch.bool)
        to = torch.full((len(b),), txt_oov, dtype=torch.bool)
        outs.append(model(data, b, io, to))
    return tuple(torch.cat([o[i] for o in outs]).numpy().astype(np.float64) for i in range(3))


def train(model: CTRModel, data: Data, cfg: TrainConfig, log, seed: int = 0) -> None:
    torch.manual_seed(seed)
    tr = torch.nonzero(data.r_split == 0).squeeze(1)
    va = torch.nonzero(data.r_split == 3).squeeze(1)
    log(f"train rows {len(tr)}, validation rows {len(va)}")
    params = [p for p in model.parameters() if p.requires_grad]
    _run_epochs(model, data, tr, cfg.epochs_joint, cfg, params, cfg.lr, seed + 1, log, "joint", va)
    model.freeze_text(data)
    params = [p for p in model.parameters() if p.requires_grad]
    _run_epochs(model, data, tr, cfg.epochs_head, cfg, params, cfg.lr * 0.5, seed + 2, log, "head", va)
    model.eval()


@torch.no_grad()
def fit_spread_tau(model: CTRModel, data: Data, rows: torch.Tensor, log,
                   grid=(0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.65, 1.8, 2.0)) -> float:
    """Pick the spread temperature that minimises the held-out NLL of click counts."""
    res = {}
    for tau in grid:
        model.head.spread_tau.fill_(tau)
        res[tau] = evaluate_nll(model, data, rows)
    best = min(res, key=res.get)
    model.head.spread_tau.fill_(best)
    log("spread temperature: " + ", ".join(f"{k}: {v:.5f}" for k, v in res.items()) + f" -> {best}")
    return best
