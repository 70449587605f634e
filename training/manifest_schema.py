"""Validate a bundle manifest against docs/manifest.schema.json (the schema the server's Ajv uses)
before it is written, so training never ships a manifest the server would refuse; and the digest
of a bundle file as its `files` entries and `sha256` fields record it."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "manifest.schema.json"


def _path(err: jsonschema.ValidationError) -> str:
    out = "manifest"
    for p in err.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def manifest_errors(manifest: dict) -> list[str]:
    """One `path: reason` line per schema error; empty when the manifest is valid."""
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{_path(e)}: {e.message}" for e in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))]


def check_manifest(manifest: dict) -> None:
    errors = manifest_errors(manifest)
    if errors:
        raise ValueError("manifest does not match docs/manifest.schema.json:\n  " + "\n  ".join(errors))


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
