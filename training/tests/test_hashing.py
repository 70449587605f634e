import json
import struct

import pytest

from training.synth import SYNTH_FIELDS as FIELDS
from training.hashing import hash_row, numeric_row


def murmur3_x86_32(data: bytes, seed: int) -> int:
    """Reference implementation (Austin Appleby's MurmurHash3_x86_32), independent of sklearn."""
    c1, c2, m = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & m
    n = len(data) // 4
    for (k,) in struct.iter_unpack("<I", data[: 4 * n]):
        k = (k * c1) & m
        k = ((k << 15) | (k >> 17)) & m
        k = (k * c2) & m
        h ^= k
        h = ((h << 13) | (h >> 19)) & m
        h = (h * 5 + 0xE6546B64) & m
    tail = data[4 * n:]
    k = 0
    for i, b in enumerate(tail):
        k |= b << (8 * i)
    if tail:
        k = (k * c1) & m
        k = ((k << 15) | (k >> 17)) & m
        k = (k * c2) & m
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & m
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & m
    h ^= h >> 16
    return h


def test_reference_implementation_known_values():
    assert murmur3_x86_32(b"", 0) == 0
    assert murmur3_x86_32(b"", 1) == 0x514E28B7
    assert murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0) == 0x2E4FF723


VALUES = ["p42", "é", "日本語", "🚀", "👩‍💻", " ", "a" * 77, "tag\u0000x", "abc", "abcd", "abcde"]


@pytest.mark.parametrize("value", VALUES)
def test_hash_row_matches_reference(value):
    for f in FIELDS:
        if f.type == "categorical":
            expect = 1 + murmur3_x86_32(value.encode("utf-8"), f.seed) % (f.rows - 1)
            assert hash_row(value, f.seed, f.rows) == expect


def test_missing_and_empty_are_row_zero():
    assert hash_row(None, 17, 4096) == 0
    assert hash_row("", 17, 4096) == 0
    with pytest.raises(TypeError):
        hash_row(42, 17, 4096)


def test_numeric_rows_bisect_right():
    edges = [0.5, 1.2, 3.0]
    assert [numeric_row(x, edges) for x in (None, 0.0, 0.5, 1.0, 1.2, 2.9, 3.0, 1e9)] == [0, 1, 2, 2, 3, 3, 4, 4]


def test_bundle_hash_vectors(bundle_dir):
    man = json.loads((bundle_dir / "manifest.json").read_text())
    vecs = man["hash_test_vectors"]
    assert len(vecs) >= 30
    assert any(v["value"] == "" for v in vecs) and any(ord(ch) > 0xFFFF for v in vecs for ch in v["value"])
    fields = {f["name"]: f for f in man["fields"]}
    for v in vecs:
        f = fields[v["field"]]
        expect = 0 if v["value"] == "" else 1 + murmur3_x86_32(v["value"].encode(), f["hash"]["seed"]) % (f["rows"] - 1)
        assert v["row"] == expect
