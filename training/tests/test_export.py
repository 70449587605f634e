import numpy as np
import torch

from training.config import IMAGE_DIM, TEXT_DIM

FIELDS_DIM = 40
from training.encoders import ImageEncoder, TextEncoder
from training.export import (HEAD_INPUTS, export_head, export_image_encoder, export_text_encoder,
                             max_abs_diff)
from training.model import Head
from training.tokenizer import pad_batch


def _seqs(rng, n, vocab=50):
    return [rng.integers(2, vocab, rng.integers(1, 20)).tolist() for _ in range(n)]


def test_text_encoder_is_invariant_to_right_padding():
    torch.manual_seed(0)
    enc = TextEncoder(50).eval()
    seqs = _seqs(np.random.default_rng(0), 9)
    ids, mask = pad_batch(seqs)
    with torch.no_grad():
        base = enc(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        for extra in (1, 5, 40):
            out = enc(torch.from_numpy(np.pad(ids, ((0, 0), (0, extra)))),
                      torch.from_numpy(np.pad(mask, ((0, 0), (0, extra))))).numpy()
            assert np.max(np.abs(out - base)) < 1e-6
        for i, s in enumerate(seqs):  # alone, unpadded
            a, m = pad_batch([s])
            one = enc(torch.from_numpy(a), torch.from_numpy(m)).numpy()[0]
            assert np.max(np.abs(one - base[i])) < 1e-6


def test_text_encoder_onnx_parity_over_batches_and_lengths(tmp_path):
    torch.manual_seed(1)
    enc = TextEncoder(50).eval()
    rng = np.random.default_rng(1)
    seqs = _seqs(rng, 33)
    ids, mask = pad_batch(seqs)
    export_text_encoder(enc, tmp_path / "t.onnx", ids, mask)
    for b, extra in ((1, 0), (2, 7), (33, 0), (33, 3)):
        i, m = pad_batch(seqs[:b])
        i, m = np.pad(i, ((0, 0), (0, extra))), np.pad(m, ((0, 0), (0, extra)))
        assert max_abs_diff(enc, tmp_path / "t.onnx", {"input_ids": i, "attention_mask": m}) <= 1e-5


def test_head_onnx_parity(tmp_path):
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    head = Head(rng.uniform(0, 1, IMAGE_DIM), rng.uniform(0.1, 1, IMAGE_DIM), FIELDS_DIM).eval()
    B = 17
    x = [rng.uniform(0, 3, (B, IMAGE_DIM)).astype(np.float32), rng.integers(0, 2, (B, 1)).astype(np.float32),
         rng.normal(0, 1, (B, TEXT_DIM)).astype(np.float32), rng.integers(0, 2, (B, 1)).astype(np.float32),
         rng.normal(0, 0.1, (B, FIELDS_DIM)).astype(np.float32)]
    export_head(head, tmp_path / "h.onnx", x)
    for b in (1, 5, B):
        assert max_abs_diff(head, tmp_path / "h.onnx", dict(zip(HEAD_INPUTS, (a[:b] for a in x)))) <= 1e-5
    with torch.no_grad():
        pi, mu, sigma = head(*[torch.from_numpy(a) for a in x])
    assert torch.allclose(pi.sum(1), torch.ones(B)) and bool((sigma > 0).all())


def test_image_encoder_onnx_parity_tiny(tmp_path):
    torch.manual_seed(3)
    enc = ImageEncoder(pretrained=False)
    x = np.random.default_rng(3).uniform(-1, 1, (3, 3, 128, 128)).astype(np.float32)
    export_image_encoder(enc, tmp_path / "i.onnx", x)
    for b in (1, 3):
        assert max_abs_diff(enc, tmp_path / "i.onnx", {"pixels": x[:b]}) <= 1e-5
