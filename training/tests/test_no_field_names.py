"""Fields come from the spec: no field name of the synthetic world is written as a string in
training/ (outside the generator) or in src/."""
import re
from pathlib import Path

from training.synth import SYNTH_FIELDS

REPO = Path(__file__).resolve().parents[2]


def _literals(path: Path, names: set[str]) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [f"{path.relative_to(REPO)}: {m.group(0)}" for m in re.finditer(r"""(['"`])([A-Za-z_]+)\1""", text)
            if m.group(2) in names]


def test_no_synthetic_field_name_outside_the_generator():
    names = {f.name for f in SYNTH_FIELDS}
    files = [p for p in (REPO / "training").glob("*.py") if p.name != "synth.py"]
    files += list((REPO / "src").rglob("*.ts"))
    found = [hit for p in files for hit in _literals(p, names)]
    assert found == []
