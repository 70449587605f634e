"""The field spec: which fields of the log the model uses, and how.

    python -m training.fields --data rows.jsonl --out fields.json   # infer a starting spec, then edit it

`fields.json` = {"fields": [ {name, scope: item|context, type: categorical|numeric, multi, dim,
buckets (categorical: hash table rows incl. the missing row 0), bins (numeric: equal-frequency
bins), seed (optional hash seed)} ]}. The order is the order of the head's fields_emb input.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from sklearn.utils import murmurhash3_32

SCOPES = ("item", "context")
TYPES = ("categorical", "numeric")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    scope: str            # "item" | "context"
    type: str             # "categorical" | "numeric"
    dim: int
    multi: bool = False
    seed: int = 0
    rows: int = 0         # categorical: hash buckets (row 0 = missing); numeric rows come from the fitted edges
    bins: int = 0         # numeric: target number of equal-frequency bins

    def to_json(self) -> dict:
        d = {"name": self.name, "scope": self.scope, "type": self.type, "dim": self.dim}
        if self.type == "categorical":
            d.update({"multi": self.multi, "buckets": self.rows, "seed": self.seed})
        else:
            d["bins"] = self.bins
        return d


def default_seed(name: str) -> int:
    """A stable per-field hash seed, so editing the spec's order does not rehash a field."""
    return murmurhash3_32(name, seed=0, positive=True) % 100_000


def field_from_json(d: dict, where: str) -> FieldSpec:
    def need(key, kind):
        if key not in d:
            raise ValueError(f"{where}: missing {key!r}")
        if not isinstance(d[key], kind) or isinstance(d[key], bool) and kind is int:
            raise ValueError(f"{where}.{key}: must be {kind.__name__}")
        return d[key]

    name, scope, typ, dim = need("name", str), need("scope", str), need("type", str), need("dim", int)
    if scope not in SCOPES:
        raise ValueError(f"{where}.scope: must be one of {SCOPES}, got {scope!r}")
    if typ not in TYPES:
        raise ValueError(f"{where}.type: must be one of {TYPES}, got {typ!r}")
    if not 1 <= dim <= 1024:
        raise ValueError(f"{where}.dim: must be in 1..1024")
    if typ == "categorical":
        buckets = need("buckets", int)
        if buckets < 2:
            raise ValueError(f"{where}.buckets: must be >= 2 (row 0 is the missing value)")
        seed = d.get("seed", default_seed(name))
        return FieldSpec(name, scope, typ, dim, multi=bool(d.get("multi", False)), seed=int(seed), rows=buckets)
    bins = need("bins", int)
    if bins < 1:
        raise ValueError(f"{where}.bins: must be >= 1")
    if d.get("multi"):
        raise ValueError(f"{where}.multi: numeric fields take one number")
    return FieldSpec(name, scope, typ, dim, bins=bins)


def load_spec(path: Path) -> list[FieldSpec]:
    doc = json.loads(Path(path).read_text())
    raw = doc.get("fields") if isinstance(doc, dict) else None
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: expected {{\"fields\": [...]}} with at least one field")
    fields = [field_from_json(d, f"{path}: fields[{i}]") for i, d in enumerate(raw)]
    seen = Counter(f.name for f in fields)
    dup = [n for n, c in seen.items() if c > 1]
    if dup:
        raise ValueError(f"{path}: fields declared twice (a name belongs to one scope): {', '.join(dup)}")
    return fields


def save_spec(fields: list[FieldSpec], path: Path) -> None:
    Path(path).write_text(json.dumps({"fields": [f.to_json() for f in fields]}, indent=2, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------ inference

def _pow2_at_least(x: float) -> int:
    return 1 << max(1, math.ceil(math.log2(max(2.0, x))))


def categorical_defaults(distinct: int) -> tuple[int, int]:
    """(buckets, dim): about 2 buckets per distinct value seen (few collisions, room for new
    values), capped at 2^18; dim grows like the 4th root of the cardinality (Google's rule of thumb)."""
    buckets = min(1 << 18, _pow2_at_least(2 * distinct + 1))
    dim = int(min(32, max(4, 2 * round(1.6 * distinct ** 0.25))))
    return buckets, dim


def numeric_defaults(distinct: int) -> tuple[int, int]:
    bins = int(max(2, min(32, distinct - 1)))
    return bins, 8 if bins > 8 else 4


def infer_spec(rows) -> list[FieldSpec]:
    """A starting spec from `(context, item)` dicts: every field under `categorical` / `numeric`,
    in order of first appearance, item fields first."""
    values: dict[tuple[str, str, str], set] = defaultdict(set)
    multi: dict[tuple[str, str, str], bool] = defaultdict(bool)
    order: dict[tuple[str, str, str], int] = {}
    for context, item in rows:
        for scope, rec in (("item", item), ("context", context)):
            for typ in TYPES:
                for name, v in ((rec or {}).get(typ) or {}).items():
                    key = (scope, typ, name)
                    order.setdefault(key, len(order))
                    if isinstance(v, list):
                        multi[key] = True
                        vs = values[key]
                        for x in v:
                            if len(vs) < 1_000_000:
                                vs.add(x)
                    elif v is not None and len(values[key]) < 1_000_000:
                        values[key].add(v)
    out, names = [], set()
    for key in sorted(order, key=lambda k: (SCOPES.index(k[0]), order[k])):
        scope, typ, name = key
        if name in names:
            print(f"fields: {scope}/{typ}/{name} left out: the name is already a field (a name belongs to one scope)",
                  file=sys.stderr)
            continue
        names.add(name)
        n = len(values[key])
        if typ == "categorical":
            buckets, dim = categorical_defaults(n)
            out.append(FieldSpec(name, scope, typ, dim, multi=multi[key], seed=default_seed(name), rows=buckets))
        else:
            bins, dim = numeric_defaults(n)
            out.append(FieldSpec(name, scope, typ, dim, bins=bins))
    return out


def main(argv=None) -> int:
    from .rows import read_log

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="training rows (JSONL, or .parquet)")
    ap.add_argument("--out", type=Path, required=True, help="where to write fields.json")
    ap.add_argument("--max-invalid", type=float, default=0.01,
                    help="stop when more than this share (<1) or number (>=1) of rows are invalid")
    args = ap.parse_args(argv)
    log = read_log(args.data, max_invalid=args.max_invalid, report=sys.stderr)
    fields = infer_spec(zip(log.contexts, (log.items[i] for i in log.item)))
    save_spec(fields, args.out)
    for f in fields:
        what = f"{f.rows} buckets" if f.type == "categorical" else f"{f.bins} bins"
        print(f"{f.scope:8s} {f.type:12s} {f.name:24s} {'multi ' if f.multi else ''}{what}, dim {f.dim}")
    print(f"wrote {args.out} ({len(fields)} fields from {len(log.item)} rows); edit it, then run training.build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
