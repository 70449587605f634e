"""Images of a user's log (HTTP with a disk cache, local paths under --image-root) and the splits."""
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

from training.build import CALIB, SEEN, TEST, TRAIN, VALID, row_split
from training.images import ImageFetcher
from training.rows import Log


class _Handler(SimpleHTTPRequestHandler):
    hits: dict = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if self.path == "/flaky.png" and _Handler.hits[self.path] == 1:
            self.send_error(503)
            return
        super().do_GET()

    def log_message(self, *a):
        pass


def test_fetch_cache_local_paths_and_failures(tmp_path):
    served, root = tmp_path / "served", tmp_path / "root"
    served.mkdir()
    root.mkdir()
    Image.new("RGB", (128, 128), (200, 10, 10)).save(served / "a.png")
    Image.new("RGB", (128, 128), (10, 200, 10)).save(served / "flaky.png")
    Image.new("RGB", (64, 32), (10, 10, 200)).save(root / "b.png")
    (root / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "secret.png").write_bytes((served / "a.png").read_bytes())
    srv = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(served)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        urls = [f"{base}/a.png", f"{base}/missing.png", f"{base}/flaky.png", "b.png", "../secret.png",
                "broken.jpg", None, "ftp://x/y.png"]
        f = ImageFetcher(root, tmp_path / "cache", timeout_s=5, retries=2, concurrency=4)
        px, ok, files = f.load(urls, log=lambda m: None)
        assert ok.tolist() == [True, False, True, True, False, False, False, False]
        assert px[0, 0, 0].tolist() == [200, 10, 10] and px[3].shape == (128, 128, 3)  # resized like the server
        assert dict(f.failures) == {"HTTP 404": 1, "path outside --image-root": 1, "cannot decode (UnidentifiedImageError)": 1,
                                    "no image_url": 1, "unsupported URL scheme": 1}
        assert _Handler.hits["/flaky.png"] == 2, "a 5xx is retried"
        assert _Handler.hits["/missing.png"] == 1, "a 404 is not retried"
        ImageFetcher(root, tmp_path / "cache").load(urls[:1], log=lambda m: None)
        assert _Handler.hits["/a.png"] == 1, "fetched once, then read from the disk cache"
    finally:
        srv.shutdown()


def _log(n_items=50, rows_per=20, ts=True):
    log = Log()
    log.items = [{"id": f"it{i}"} for i in range(n_items)]
    log.item = np.repeat(np.arange(n_items), rows_per)
    log.timestamp = np.random.default_rng(0).permutation(len(log.item)).astype(float) if ts else None
    return log


def test_splits():
    log = _log()
    s = row_split(log, "item")
    for i in range(50):  # every row of an item is in one split (train rows may be held out as "seen")
        assert len(set(s[log.item == i].tolist()) - {SEEN}) == 1
    s = row_split(log, "time")
    order = np.argsort(log.timestamp)
    ranks = [TRAIN, VALID, CALIB, TEST]
    assert [ranks.index(v) for v in s[order]] == sorted(ranks.index(v) for v in s), "later rows, later splits"
    assert abs((s == TEST).mean() - 0.09) < 0.01 and SEEN not in s
    s = row_split(log, "random")
    assert abs((s == TRAIN).mean() - 0.76) < 0.05
