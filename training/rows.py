"""Training rows: the `ctrserve score` row shape plus labels, as JSONL or Parquet (`.parquet`,
struct columns `context` and `item`; null values count as absent).

    {"context": {...}, "item": {"id", "image_url"?, "title"?, "categorical"?, "numeric"?},
     "impressions": 120, "clicks": 3}          # or "clicked": 0 | 1 (one impression)
     "timestamp"?: seconds or ISO 8601,  "oracle"?: {"m", "s", "z"} (synthetic data only)

A bad row is reported with its line number and the reason; `max_invalid` decides whether reading
stops. Nothing is dropped silently.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class InvalidLog(ValueError):
    pass


@dataclass
class Log:
    items: list[dict] = field(default_factory=list)       # distinct items, first occurrence
    item: np.ndarray | list = field(default_factory=list)  # row -> item index
    contexts: list[dict] = field(default_factory=list)
    impressions: np.ndarray | list = field(default_factory=list)
    clicks: np.ndarray | list = field(default_factory=list)
    timestamp: np.ndarray | None = None
    oracle: dict[str, np.ndarray] | None = None
    invalid: list[tuple[int, str]] = field(default_factory=list)
    lines: int = 0
    item_conflicts: int = 0                                # same id, different attributes: first kept

    def __len__(self) -> int:
        return len(self.item)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()


def _check_fields(rec: dict, where: str) -> str | None:
    cat = rec.get("categorical", {})
    if not isinstance(cat, dict):
        return f"{where}.categorical: must be an object"
    for k, v in cat.items():
        if v is None or isinstance(v, str):
            continue
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            continue
        return f"{where}.categorical.{k}: must be a string or an array of strings"
    num = rec.get("numeric", {})
    if not isinstance(num, dict):
        return f"{where}.numeric: must be an object"
    for k, v in num.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"{where}.numeric.{k}: must be a finite number"
    return None


def _labels(r: dict) -> tuple[int, int] | str:
    if "impressions" in r or "clicks" in r:
        n, c = r.get("impressions"), r.get("clicks")
        if not _is_int(n) or n < 1:
            return "impressions: must be an integer >= 1"
        if not _is_int(c) or c < 0:
            return "clicks: must be an integer >= 0"
        if c > n:
            return f"clicks ({int(c)}) > impressions ({int(n)})"
        return int(n), int(c)
    if "clicked" in r:
        v = r["clicked"]
        if v in (0, 1) or isinstance(v, bool):
            return 1, int(bool(v))
        return "clicked: must be 0 or 1"
    return "missing labels: give impressions and clicks, or clicked"


def _timestamp(v) -> float | str:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    if isinstance(v, str):
        try:
            return dt.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return "timestamp: must be seconds or an ISO 8601 string"


def check_row(r) -> dict | str:
    """The parsed row, or the reason it is invalid."""
    if not isinstance(r, dict):
        return "row is not a JSON object"
    item, context = r.get("item"), r.get("context", {})
    if not isinstance(item, dict):
        return "item: missing or not an object"
    if not isinstance(item.get("id"), str) or not item["id"]:
        return "item.id: must be a non-empty string"
    for key in ("title", "image_url"):
        if key in item and item[key] is not None and not isinstance(item[key], str):
            return f"item.{key}: must be a string"
    if context is None:
        context = {}
    if not isinstance(context, dict):
        return "context: must be an object"
    for rec, where in ((item, "item"), (context, "context")):
        why = _check_fields(rec, where)
        if why:
            return why
    lab = _labels(r)
    if isinstance(lab, str):
        return lab
    out = {"item": item, "context": context, "n": lab[0], "c": lab[1]}
    if "timestamp" in r:
        ts = _timestamp(r["timestamp"])
        if isinstance(ts, str):
            return ts
        out["t"] = ts
    if "oracle" in r:
        o = r["oracle"]
        if not isinstance(o, dict) or not all(isinstance(o.get(k), (int, float)) for k in ("m", "s", "z")):
            return "oracle: must be an object with numbers m, s, z"
        out["oracle"] = o
    return out


def _too_many(bad: int, total: int, max_invalid: float) -> bool:
    return bad > (max_invalid * total if max_invalid < 1 else max_invalid)


class InvalidRow(str):
    """A row that is not even a record (not JSON): its reason."""


def _drop_nulls(v):
    """Parquet gives every struct member of the schema, null where a row has none: absent."""
    if isinstance(v, dict):
        return {k: _drop_nulls(x) for k, x in v.items() if x is not None}
    return v


def _records(path: Path):
    """(line or row number, parsed row or the reason it is not one)."""
    if Path(path).suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise InvalidLog(f"{path}: reading Parquet needs pyarrow (pip install -r training/requirements.txt)") from e
        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
            for r in batch.to_pylist():
                n += 1
                yield n, _drop_nulls(r)
        return
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, InvalidRow(f"not JSON ({e.msg} at column {e.colno})")


def read_log(path: Path, max_invalid: float = 0.0, report=sys.stderr, show: int = 50) -> Log:
    """Read and check every row. Raises InvalidLog when more rows are invalid than allowed
    (`max_invalid`: a share of the rows when < 1, else a count)."""
    log = Log()
    by_id: dict[str, int] = {}
    ts, oracle = [], []
    item, ctx, n_, c_ = [], [], [], []
    for lineno, value in _records(path):
        log.lines += 1
        r = value if isinstance(value, InvalidRow) else check_row(value)
        if isinstance(r, str):
            log.invalid.append((lineno, r))
            if len(log.invalid) <= show:
                print(f"{path}:{lineno}: {r}", file=report)
            continue
        iid = r["item"]["id"]
        k = by_id.get(iid)
        if k is None:
            k = by_id[iid] = len(log.items)
            log.items.append(r["item"])
        elif log.items[k] != r["item"]:
            log.item_conflicts += 1
        item.append(k)
        ctx.append(r["context"])
        n_.append(r["n"])
        c_.append(r["c"])
        ts.append(r.get("t", math.nan))
        if "oracle" in r:
            oracle.append((r["oracle"]["m"], r["oracle"]["s"], r["oracle"]["z"]))
    bad = len(log.invalid)
    if bad > show:
        print(f"{path}: ... and {bad - show} more invalid rows", file=report)
    if bad:
        print(f"{path}: {bad} of {log.lines} rows invalid (not used)", file=report)
    if _too_many(bad, log.lines, max_invalid):
        raise InvalidLog(f"{path}: {bad} of {log.lines} rows are invalid, more than --max-invalid {max_invalid:g}; "
                         f"first: line {log.invalid[0][0]}: {log.invalid[0][1]}")
    if not item:
        raise InvalidLog(f"{path}: no valid rows")
    log.item = np.asarray(item, np.int64)
    log.contexts = ctx
    log.impressions = np.asarray(n_, np.int64)
    log.clicks = np.asarray(c_, np.int64)
    t = np.asarray(ts, np.float64)
    log.timestamp = None if np.isnan(t).all() else t
    if oracle and len(oracle) == len(item):
        o = np.asarray(oracle, np.float64)
        log.oracle = {"m": o[:, 0], "s": o[:, 1], "z": o[:, 2]}
    if log.item_conflicts:
        print(f"{path}: {log.item_conflicts} rows repeat an item id with other attributes; the first occurrence is used",
              file=report)
    return log
