import copy
import json
from pathlib import Path

from training.manifest_schema import manifest_errors

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "ctr-synth" / "manifest.json"


def test_reference_manifest_is_valid():
    assert manifest_errors(json.loads(BUNDLE.read_text())) == []


def test_broken_manifest_names_each_path():
    m = copy.deepcopy(json.loads(BUNDLE.read_text()))
    m["fields"][1]["dim"] = 0
    m["mdn"]["k"] = "four"
    errs = manifest_errors(m)
    assert any(e.startswith("manifest.mdn.k:") for e in errs), errs
    assert any(e.startswith("manifest.fields[1]") for e in errs), errs
