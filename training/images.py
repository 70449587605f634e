"""Item images for training: `image_url` over http(s) (fetched once into a disk cache, bounded
concurrency, retries, timeouts) or a local path under `--image-root`. A failure makes that item's
image OOV in training; failures are counted by reason and reported. Decoding is the server's
(`encoders.decode_image`), so parity holds."""
from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import IMAGE_SIZE
from .encoders import decode_image

MAX_BYTES = 20 << 20


@dataclass
class ImageFetcher:
    image_root: Path | None
    cache_dir: Path
    timeout_s: float = 10.0
    retries: int = 2
    concurrency: int = 8
    failures: Counter = field(default_factory=Counter)

    def _download(self, url: str, dest: Path) -> Path | str:
        last = "unknown error"
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_s) as r:
                    body = r.read(MAX_BYTES + 1)
                if len(body) > MAX_BYTES:
                    return f"larger than {MAX_BYTES} bytes"
                tmp = dest.with_suffix(".part")
                tmp.write_bytes(body)
                tmp.replace(dest)
                return dest
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
                if 400 <= e.code < 500 and e.code != 429:
                    return last  # permanent: retrying will not help
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                last = type(getattr(e, "reason", e)).__name__
            time.sleep(0.2 * 2 ** attempt)
        return last

    def locate(self, url: str | None) -> Path | str:
        """A local file with the image's bytes, or the reason there is none."""
        if not url:
            return "no image_url"
        if url.lower().startswith(("http://", "https://")):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            dest = self.cache_dir / hashlib.sha256(url.encode()).hexdigest()
            return dest if dest.exists() else self._download(url, dest)
        if "://" in url:
            return "unsupported URL scheme"
        if self.image_root is None:
            return "local path without --image-root"
        root = self.image_root.resolve()
        p = (root / url).resolve()
        if root not in p.parents:
            return "path outside --image-root"
        return p if p.is_file() else "file not found"

    def load(self, urls: list[str | None], log=print) -> tuple[np.ndarray, np.ndarray, list[Path | None]]:
        """(pixels uint8 [N, H, W, 3], has_image bool [N], local files) for every URL."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            found = list(pool.map(self.locate, urls))
        pixels = np.zeros((len(urls), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        ok = np.zeros(len(urls), bool)
        files: list[Path | None] = []
        for i, f in enumerate(found):
            if isinstance(f, str):
                self.failures[f] += 1
                files.append(None)
                continue
            try:
                pixels[i] = decode_image(f)
                ok[i] = True
                files.append(f)
            except Exception as e:  # noqa: BLE001 - any undecodable file is an OOV image, counted by type
                self.failures[f"cannot decode ({type(e).__name__})"] += 1
                files.append(None)
        log(f"images: {int(ok.sum())} of {len(urls)} items have one"
            + ("" if not self.failures else "; OOV because " + ", ".join(f"{k}: {v}" for k, v in self.failures.most_common())))
        return pixels, ok, files


def content_key(files: list[Path | None]) -> str:
    """Cache key of image features: the bytes of every image, in order."""
    h = hashlib.sha256()
    for f in files:
        h.update(hashlib.sha256(f.read_bytes()).digest() if f else b"-")
    return h.hexdigest()[:16]
