"""Constants of the model and the synthetic world's size. Everything the server needs is copied into
the bundle manifest from here, so TypeScript never hard-codes any of it. Fields come from the field
spec (`training/fields.py`), never from here."""
from __future__ import annotations

from dataclasses import dataclass, field

IMAGE_SIZE = 128
# EfficientNet-Lite was trained in TF with (x - 127) / 128, i.e. mean = std = 0.5 on [0, 1] pixels.
IMAGE_MEAN = [0.5, 0.5, 0.5]
IMAGE_STD = [0.5, 0.5, 0.5]
IMAGE_DIM = 1280
JPEG_QUALITY = 90

TEXT_MAX_LEN = 32
TEXT_VOCAB = 3000
TEXT_EMB = 64
TEXT_HIDDEN = 64
TEXT_HEADS = 2          # structured self-attention hops r; output dim = r * hidden
TEXT_ATT_DIM = 32
TEXT_DIM = TEXT_HEADS * TEXT_HIDDEN

MDN_K = 4
GH_NODES = 64           # Gauss–Hermite nodes shipped in the manifest (statistics)
GH_TRAIN_NODES = 24     # nodes used inside the training likelihood
QUANTILES = {"p05": 0.05, "p50": 0.5, "p95": 0.95}
BISECT_ITERS = 100
BISECT_SPAN = 10.0      # bracket = [min(mu - 10 sigma), max(mu + 10 sigma)]




@dataclass(frozen=True)
class DataConfig:
    seed: int = 20261123
    n_items: int = 12000
    n_rows: int = 720_000
    n_publishers: int = 1500
    split: tuple[float, float, float, float] = (0.76, 0.06, 0.09, 0.09)  # train/validation/calibration/test
    mean_log_impr: float = 5.0


SMALL = DataConfig(n_items=300, n_rows=6000, n_publishers=80)
FULL = DataConfig(n_items=96_000, n_rows=5_760_000)


@dataclass
class TrainConfig:
    epochs_joint: int = 4        # text encoder + head (early stopping on validation)
    epochs_head: int = 6         # head only, text encoder frozen (early stopping)
    batch: int = 1024
    lr: float = 2e-3
    oov_image: float = 0.15
    oov_text: float = 0.15
    field_drop: float = 0.03     # rows whose value is replaced by "missing" (row 0), so row 0 is trained
    weight_decay: float = 5e-5
    ema: float = 0.0             # decay of the weight average that is validated and kept (0 = last weights)
    extra: dict = field(default_factory=dict)


SMALL_TRAIN = TrainConfig(epochs_joint=1, epochs_head=1, batch=512)
