"""End-to-end: `python -m training.build --small` (the synthetic world written as rows, then read
back like a user's log) produces a bundle that passes the same checks as the committed one."""
import json

from training import build

from . import test_bundle as tb


def test_small_build_end_to_end(tmp_path):
    out = tmp_path / "bundle"
    assert build.main(["--small", "--out", str(out), "--work", str(tmp_path / "work"),
                       "--sample-out", str(tmp_path / "sample")]) == 0
    assert (out / "READY").exists() and not (tmp_path / "bundle.building").exists()
    b = tb.load(out)
    tb.test_manifest_files_and_shapes(b)
    tb.test_parity_fixtures_recomputed_with_onnxruntime(b)
    man = b[1]
    assert [f["name"] for f in man["fields"]][:2] == ["publisher", "category"]
    assert len(man["hash_test_vectors"]) >= 30
    report = json.loads((out / "report" / "report.json").read_text())
    for split in report["splits"].values():
        assert set(split["columns"]) >= {"oracle p*", "oracle E[p*|x]", "model (raw mean)", "model (calibrated)",
                                         "baseline LR (categorical)"}
        assert split["columns"]["oracle p*"]["auc"] > 0.6
    items = (tmp_path / "sample" / "items.jsonl").read_text().splitlines()
    first = json.loads(items[0])
    assert (tmp_path / "sample" / first["image_url"]).exists()
