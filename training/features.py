"""Raw item/context records -> table rows, exactly as the server computes them."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .fields import FieldSpec
from .hashing import equal_frequency_edges, hash_row, numeric_row

MAX_TAGS = 8


class Featurizer:
    def __init__(self, fields: list[FieldSpec], edges: dict[str, list[float]]):
        self.fields = fields
        self.edges = edges

    def rows_of(self, f: FieldSpec) -> int:
        return f.rows if f.type == "categorical" else len(self.edges[f.name]) + 2

    @property
    def table_rows(self) -> dict[str, int]:
        return {f.name: self.rows_of(f) for f in self.fields}

    def field_row(self, f: FieldSpec, record: dict | None):
        """record = the item or the context dict; returns int, or list[int] for multi fields."""
        section = (record or {}).get("categorical" if f.type == "categorical" else "numeric") or {}
        v = section.get(f.name)
        if f.type == "numeric":
            return numeric_row(v, self.edges[f.name])
        if f.multi:
            vals = v if isinstance(v, list) else ([] if v is None else [v])
            rows = [_hash(x, f.seed, f.rows) for x in vals]
            return rows if rows else [0]
        return _hash(v, f.seed, f.rows)

    def record_rows(self, item: dict, context: dict) -> dict:
        out = {}
        for f in self.fields:
            out[f.name] = self.field_row(f, item if f.scope == "item" else context)
        return out

    def scope_arrays(self, records: list[dict], scope: str) -> dict[str, np.ndarray]:
        out = {}
        for f in self.fields:
            if f.scope != scope:
                continue
            vals = [self.field_row(f, r) for r in records]
            if f.multi:
                a = np.full((len(vals), MAX_TAGS), -1, dtype=np.int64)
                for i, v in enumerate(vals):
                    a[i, : min(len(v), MAX_TAGS)] = v[:MAX_TAGS]
                out[f.name] = a
            else:
                out[f.name] = np.asarray(vals, dtype=np.int64)
        return out


@lru_cache(maxsize=200_000)
def _hash(v, seed: int, rows: int) -> int:
    return hash_row(v, seed, rows)


def fit_edges(fields: list[FieldSpec], item_records: list[dict], context_records: list[dict]) -> dict[str, list[float]]:
    edges = {}
    for f in fields:
        if f.type != "numeric":
            continue
        recs = item_records if f.scope == "item" else context_records
        edges[f.name] = equal_frequency_edges([(r.get("numeric") or {}).get(f.name) for r in recs], f.bins)
    return edges


def fields_emb_numpy(fields: list[FieldSpec], tables: dict[str, np.ndarray], rows: dict) -> np.ndarray:
    """Server-side lookup: concat per-field rows (mean for multi-valued) in `fields` order."""
    parts = []
    for f in fields:
        r = rows[f.name]
        if f.multi:
            parts.append(np.mean(tables[f.name][np.asarray(r)], axis=0, dtype=np.float32))
        else:
            parts.append(tables[f.name][r])
    return np.concatenate(parts).astype(np.float32)
