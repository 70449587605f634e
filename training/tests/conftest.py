import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "models" / "ctr-synth"


@pytest.fixture(scope="session")
def bundle_dir() -> Path:
    if not (BUNDLE / "READY").exists():
        pytest.skip("models/ctr-synth is not built")
    return BUNDLE
