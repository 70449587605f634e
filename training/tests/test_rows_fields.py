"""Reading a user's log (bad rows reported with their line) and inferring a field spec."""
import io
import json

import pytest

from training.fields import field_from_json, infer_spec, load_spec, save_spec
from training.rows import InvalidLog, read_log

GOOD = {"context": {"categorical": {"weekday": "mon"}, "numeric": {"temp_c": 21.5}},
        "item": {"id": "sku1", "title": "red shoe", "categorical": {"brand": "acme", "colours": ["red", "blue"]},
                 "numeric": {"price": 9.99}},
        "impressions": 40, "clicks": 2}


def _write(path, lines):
    path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")


def test_bad_rows_are_reported_with_line_and_reason(tmp_path):
    bad = [
        ({**GOOD, "clicks": 41}, "clicks (41) > impressions (40)"),
        ({k: v for k, v in GOOD.items() if k not in ("clicks", "impressions")}, "missing labels"),
        ({**GOOD, "impressions": "many"}, "impressions: must be an integer >= 1"),
        ({**GOOD, "item": {**GOOD["item"], "numeric": {"price": "cheap"}}}, "item.numeric.price: must be a finite number"),
        ({**GOOD, "context": {"categorical": {"weekday": 3}}}, "context.categorical.weekday: must be a string or an array"),
        ({**GOOD, "item": {"title": "no id"}}, "item.id: must be a non-empty string"),
        ({**GOOD, "clicked": 2, "clicks": None, "impressions": None}, "impressions: must be an integer"),
        ("{not json", "not JSON"),
        ({**GOOD, "timestamp": "yesterday"}, "timestamp: must be seconds or an ISO 8601 string"),
    ]
    lines = [GOOD, {**GOOD, "item": {**GOOD["item"], "id": "sku2"}, "clicked": 1, "impressions": None}]
    lines[1] = {k: v for k, v in lines[1].items() if k not in ("impressions", "clicks")}
    lines += [b for b, _ in bad]
    p = tmp_path / "rows.jsonl"
    _write(p, lines)
    out = io.StringIO()
    log = read_log(p, max_invalid=len(bad), report=out)
    assert len(log) == 2 and log.lines == len(lines)
    assert [ln for ln, _ in log.invalid] == list(range(3, 3 + len(bad)))
    for (ln, why), (_, want) in zip(log.invalid, bad):
        assert why.startswith(want), (ln, why, want)
        assert f"rows.jsonl:{ln}: {why}" in out.getvalue()
    assert list(log.impressions) == [40, 1] and list(log.clicks) == [2, 1]
    with pytest.raises(InvalidLog, match=r"9 of 11 rows are invalid.*first: line 3: clicks \(41\) > impressions \(40\)"):
        read_log(p, max_invalid=0.5, report=io.StringIO())


def test_field_inference_on_a_known_file(tmp_path):
    rows = []
    for i in range(400):
        rows.append({"context": {"categorical": {"weekday": ["mon", "tue", "wed"][i % 3]}, "numeric": {"temp_c": i % 50}},
                     "item": {"id": f"s{i % 40}", "categorical": {"brand": f"b{i % 20}", "colours": ["red", f"c{i % 7}"]},
                              "numeric": {"price": float(i % 40)}},
                     "impressions": 10, "clicks": 1})
    p = tmp_path / "rows.jsonl"
    _write(p, rows)
    log = read_log(p)
    spec = infer_spec(zip(log.contexts, (log.items[i] for i in log.item)))
    by = {f.name: f for f in spec}
    assert [f.name for f in spec] == ["brand", "colours", "price", "weekday", "temp_c"], "item fields first, then context"
    assert (by["brand"].scope, by["brand"].type, by["brand"].multi, by["brand"].rows) == ("item", "categorical", False, 64)
    assert (by["colours"].multi, by["colours"].rows) == (True, 32)       # 8 distinct values -> 2*8+1 -> 32
    assert (by["weekday"].scope, by["weekday"].rows) == ("context", 8)
    assert (by["price"].type, by["price"].bins) == ("numeric", 32)      # 40 distinct values, capped at 32 bins
    assert by["temp_c"].bins == 32 and by["temp_c"].scope == "context"
    save_spec(spec, tmp_path / "fields.json")
    assert load_spec(tmp_path / "fields.json") == spec


def test_field_spec_errors_name_the_field():
    with pytest.raises(ValueError, match=r"fields\[0\]\.scope: must be one of"):
        field_from_json({"name": "x", "scope": "page", "type": "numeric", "dim": 4, "bins": 3}, "fields[0]")
    with pytest.raises(ValueError, match=r"fields\[1\]: missing 'buckets'"):
        field_from_json({"name": "x", "scope": "item", "type": "categorical", "dim": 4}, "fields[1]")
    with pytest.raises(ValueError, match=r"fields\[2\]\.multi: numeric fields take one number"):
        field_from_json({"name": "x", "scope": "item", "type": "numeric", "dim": 4, "bins": 3, "multi": True}, "fields[2]")


def test_parquet_rows_read_like_jsonl(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [GOOD, {**GOOD, "item": {"id": "sku2", "categorical": {"brand": "b2"}}, "clicks": 50},
            {"context": {}, "item": {"id": "sku3", "numeric": {"price": 1.5}}, "clicked": 1}]
    pq.write_table(pa.Table.from_struct_array(pa.array(rows)), tmp_path / "rows.parquet")  # schema from every row
    out = io.StringIO()
    log = read_log(tmp_path / "rows.parquet", max_invalid=1, report=out)
    assert log.invalid == [(2, "clicks (50) > impressions (40)")]
    assert [it["id"] for it in log.items] == ["sku1", "sku3"]
    assert log.items[0]["categorical"] == GOOD["item"]["categorical"] and "title" not in log.items[1]
    assert list(log.impressions) == [40, 1] and list(log.clicks) == [2, 1]
