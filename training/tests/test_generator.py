import numpy as np

from training import synth
from training.config import SMALL


def test_generator_is_deterministic():
    w1, i1, r1 = synth.generate(SMALL)
    w2, i2, r2 = synth.generate(SMALL)
    assert i1.titles == i2.titles and i1.publisher == i2.publisher and i1.tags == i2.tags
    np.testing.assert_array_equal(r1.clicks, r2.clicks)
    np.testing.assert_array_equal(r1.z, r2.z)
    for i in (0, 7, len(i1) - 1):
        assert synth.draw_image(i1, i).tobytes() == synth.draw_image(i2, i).tobytes()
    np.testing.assert_array_equal(synth.split_items(SMALL, len(i1)), synth.split_items(SMALL, len(i2)))


def test_generator_is_realistic():
    _, items, rows = synth.generate(SMALL)
    ctr = rows.clicks.sum() / rows.impressions.sum()
    assert 0.01 <= ctr <= 0.05
    assert np.all(rows.clicks <= rows.impressions)
    assert items.volatile.mean() > 0.05 and items.spread[items.volatile].min() > items.spread[~items.volatile].max()
    rec = items.record(0, "images/x.jpg")
    assert all(isinstance(v, str) for k, v in rec["categorical"].items() if k != "tags")
    assert all(isinstance(t, str) for t in rec["categorical"]["tags"])
    assert synth.draw_image(items, 0).size == (128, 128)
