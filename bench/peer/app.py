"""The peer for scenario 8: the same bundle behind the stack a user would otherwise pick.

FastAPI + onnxruntime + redis-py (asyncio), written the idiomatic way: pydantic models for the
body, one batched head run per request, numpy-vectorised mixture statistics, the same two cache
tiers (a byte-bounded dict LRU, then Redis MGET) under the same keys as ctrserve
(`<prefix>:<modality>:<encoder-version>:<sha256(input)[:32]>`), and on a miss the OOV vector plus
background embedding (asyncio queue; fetch with httpx, decode with Pillow and run the encoders in
a thread pool, write Redis and L1). Everything is read from the bundle manifest.

Run: MODEL_DIR=models/ctr-synth REDIS_URL=redis://127.0.0.1:6379 \
     python -m uvicorn bench.peer.app:app --loop uvloop --http httptools --port 3100

Differences from ctrserve, all in the peer's favour: the embedding queue is in-process (not
durable in Redis), there is no single flight across instances, no load shedding, no Prometheus
histograms, no `budget` policy (requests asking for it are served with `oov`).
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import time
from bisect import bisect_right
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional, Union
from urllib.parse import urlsplit

import httpx
import numpy as np
import onnxruntime as ort
import redis.asyncio as aioredis
from fastapi import FastAPI, Response
from fastapi.responses import ORJSONResponse
from PIL import Image, ImageOps
from pydantic import BaseModel, Field
from scipy.special import expit, ndtr
from sklearn.utils import murmurhash3_32
from tokenizers import Tokenizer

MODEL_DIR = Path(os.environ.get("MODEL_DIR", "models/ctr-synth"))
REDIS_URL = os.environ.get("REDIS_URL", "")
REDIS_PREFIX = os.environ.get("REDIS_PREFIX", "ctr")
L1_MAX_BYTES = int(os.environ.get("L1_MAX_BYTES", str(256 * 1024 * 1024)))
BUDGET_MS = int(os.environ.get("BUDGET_MS", "200"))
CACHE_TTL_SECONDS = int(os.environ.get("CACHE_TTL_SECONDS", str(7 * 24 * 3600)))
EMBED_BATCH = int(os.environ.get("EMBED_BATCH_SIZE", "16"))
EMBED_CONCURRENCY = int(os.environ.get("EMBED_CONCURRENCY", "4"))
QUEUE_CAPACITY = int(os.environ.get("QUEUE_CAPACITY", "100000"))
ALLOWED_HOSTS = {h.strip() for h in os.environ.get("IMAGE_ALLOWED_HOSTS", "127.0.0.1").split(",") if h.strip()}
ENTRY_OVERHEAD = 256
BISECT_ITERS = 50


# ----------------------------------------------------------------------------------- bundle

class Bundle:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.m = json.loads((root / "manifest.json").read_text())
        m = self.m
        self.fields = []
        for f in m["fields"]:
            table = np.fromfile(root / f["table"], dtype="<f4").reshape(f["rows"], f["dim"])
            self.fields.append((f, table))
        self.item_fields = [(f, t) for f, t in self.fields if f["scope"] == "item"]
        self.ctx_fields = [(f, t) for f, t in self.fields if f["scope"] == "context"]
        self.fields_dim = sum(f["dim"] for f, _ in self.fields)
        self.offsets = {}
        off = 0
        for f, _ in self.fields:
            self.offsets[f["name"]] = off
            off += f["dim"]
        self.oov = {k: np.fromfile(root / v["file"], dtype="<f4") for k, v in m["oov"].items()}
        self.dims = {k: v["dim"] for k, v in m["oov"].items()}
        self.versions = {k: m["encoders"][k]["version"] for k in ("image", "text")}
        gh = m["mdn"]["gauss_hermite"]
        self.gh_x = np.asarray(gh["nodes"], dtype=np.float64)
        self.gh_w = np.asarray(gh["weights"], dtype=np.float64) / np.sqrt(np.pi)
        self.quantiles = m["mdn"]["quantiles"]
        self.q_names = list(self.quantiles)
        self.q_values = np.asarray([self.quantiles[k] for k in self.q_names])
        self.cal_x = np.asarray(m["calibration"]["x"], dtype=np.float64)
        self.cal_y = np.asarray(m["calibration"]["y"], dtype=np.float64)


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


B = Bundle(MODEL_DIR)
HEAD = session(MODEL_DIR / B.m["head"]["file"])
IMAGE_ENC = session(MODEL_DIR / B.m["encoders"]["image"]["file"])
TEXT_ENC = session(MODEL_DIR / B.m["encoders"]["text"]["file"])
TOKENIZER = Tokenizer.from_file(str(MODEL_DIR / B.m["encoders"]["text"]["tokenizer_dir"] / "tokenizer.json"))


@lru_cache(maxsize=100_000)
def hashed_row(seed: int, rows: int, value: str) -> int:
    return 1 + murmurhash3_32(value, seed=seed, positive=True) % (rows - 1)


def field_rows(f: dict, value) -> list[int]:
    if value is None:
        return [0]
    if f["type"] == "numeric":
        return [1 + bisect_right(f["edges"], float(value))]
    if isinstance(value, list):
        if not value:
            return [0]
        return [hashed_row(f["hash"]["seed"], f["rows"], v) for v in value]
    return [hashed_row(f["hash"]["seed"], f["rows"], value)]


def fill_fields(out: np.ndarray, fields, values_cat: dict, values_num: dict) -> None:
    """One fields_emb row (or a broadcast block) for the given scope's fields."""
    for f, table in fields:
        group = values_num if f["type"] == "numeric" else values_cat
        rows = field_rows(f, group.get(f["name"]))
        o = B.offsets[f["name"]]
        out[..., o:o + f["dim"]] = table[rows[0]] if len(rows) == 1 else table[rows].mean(axis=0)


def cache_key(modality: str, value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]
    return f"{REDIS_PREFIX}:{modality}:{B.versions[modality]}:{digest}"


def ctr_stats(pi: np.ndarray, mu: np.ndarray, sigma: np.ndarray):
    """Mixture mean/std by Gauss–Hermite, quantiles by bisection on the mixture CDF, vectorised over items."""
    pi, mu, sigma = pi.astype(np.float64), mu.astype(np.float64), sigma.astype(np.float64)
    p = expit(mu[..., None] + np.sqrt(2.0) * sigma[..., None] * B.gh_x)          # [N, K, G]
    e1 = (p * B.gh_w).sum(-1)
    e2 = (p * p * B.gh_w).sum(-1)
    mean = (pi * e1).sum(-1)
    std = np.sqrt(np.maximum(0.0, (pi * e2).sum(-1) - mean * mean))
    lo = np.broadcast_to((mu - 12 * sigma).min(-1), (len(B.q_values), len(mu))).copy()   # [Q, N]
    hi = np.broadcast_to((mu + 12 * sigma).max(-1), lo.shape).copy()
    q = B.q_values[:, None]
    for _ in range(BISECT_ITERS):
        mid = 0.5 * (lo + hi)
        cdf = (pi * ndtr((mid[..., None] - mu) / sigma)).sum(-1)
        below = cdf < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    quant = expit(0.5 * (lo + hi))
    return mean, std, quant, np.interp(mean, B.cal_x, B.cal_y)


# ----------------------------------------------------------------------------------- caches

class L1:
    """Byte-bounded LRU over an OrderedDict (vectors of both modalities share the budget)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.bytes, self.d = max_bytes, 0, OrderedDict()

    def get(self, key: str):
        v = self.d.get(key)
        if v is not None:
            self.d.move_to_end(key)
        return v

    def set(self, key: str, v: np.ndarray) -> None:
        old = self.d.pop(key, None)
        if old is not None:
            self.bytes -= old.nbytes + len(key) + ENTRY_OVERHEAD
        self.d[key] = v
        self.bytes += v.nbytes + len(key) + ENTRY_OVERHEAD
        while self.bytes > self.max_bytes and self.d:
            k, old = self.d.popitem(last=False)
            self.bytes -= old.nbytes + len(k) + ENTRY_OVERHEAD


STATS = {"l1_hit": 0, "l1_miss": 0, "l2_hit": 0, "l2_miss": 0, "jobs_done": 0, "jobs_failed": 0, "jobs_dropped": 0,
         "sources": {"image": {}, "text": {}}}


class Embedder:
    """Background embedding: a bounded asyncio queue per modality, micro-batched encoder runs in threads."""

    def __init__(self, l1: L1, redis: Optional[aioredis.Redis]) -> None:
        self.l1, self.redis = l1, redis
        self.queues = {"image": asyncio.Queue(QUEUE_CAPACITY), "text": asyncio.Queue(QUEUE_CAPACITY)}
        self.pending: set[str] = set()
        self.negative: dict[str, float] = {}
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.http = httpx.AsyncClient(timeout=3.0, limits=httpx.Limits(max_connections=16))
        self.tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for mod in ("image", "text"):
            for _ in range(EMBED_CONCURRENCY):
                self.tasks.append(asyncio.create_task(self.worker(mod)))

    def enqueue(self, modality: str, key: str, value: str) -> None:
        if key in self.pending or self.negative.get(key, 0) > time.monotonic():
            return
        try:
            self.queues[modality].put_nowait((key, value, 0))
            self.pending.add(key)
        except asyncio.QueueFull:
            STATS["jobs_dropped"] += 1

    async def worker(self, modality: str) -> None:
        q = self.queues[modality]
        while True:
            batch = [await q.get()]
            while len(batch) < EMBED_BATCH and not q.empty():
                batch.append(q.get_nowait())
            try:
                await (self.embed_images(batch) if modality == "image" else self.embed_texts(batch))
            except Exception:  # noqa: BLE001 - a failed batch is retried job by job below
                for job in batch:
                    self.retry(modality, job)

    def retry(self, modality: str, job) -> None:
        key, value, attempt = job
        if attempt >= 2:
            STATS["jobs_failed"] += 1
            self.pending.discard(key)
            self.negative[key] = time.monotonic() + 300
            return
        asyncio.get_running_loop().call_later(0.5 * 2 ** attempt, self.queues[modality].put_nowait, (key, value, attempt + 1))

    async def store(self, keys: list[str], vecs: np.ndarray) -> None:
        for k, v in zip(keys, vecs):
            self.l1.set(k, v)
            self.pending.discard(k)
        STATS["jobs_done"] += len(keys)
        if self.redis is not None:
            async with self.redis.pipeline(transaction=False) as p:
                for k, v in zip(keys, vecs):
                    p.set(k, v.astype("<f4").tobytes(), ex=CACHE_TTL_SECONDS)
                await p.execute()

    async def fetch(self, url: str) -> Optional[bytes]:
        if urlsplit(url).hostname not in ALLOWED_HOSTS:
            raise PermissionError(f"{url}: host not allowed")
        r = await self.http.get(url)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.content

    async def embed_images(self, batch) -> None:
        spec = B.m["encoders"]["image"]["input"]
        loop = asyncio.get_running_loop()
        got = await asyncio.gather(*(self.fetch(v) for _, v, _ in batch), return_exceptions=True)
        ok, pixels = [], []
        for job, body in zip(batch, got):
            if isinstance(body, Exception):
                self.retry("image", job)
            elif body is None:  # 404: permanent
                STATS["jobs_failed"] += 1
                self.pending.discard(job[0])
                self.negative[job[0]] = time.monotonic() + 300
            else:
                ok.append(job)
                pixels.append(body)
        if not ok:
            return
        x = await loop.run_in_executor(self.pool, preprocess, pixels, spec)
        emb = await loop.run_in_executor(self.pool, lambda: IMAGE_ENC.run(None, {spec["name"]: x})[0])
        await self.store([k for k, _, _ in ok], emb)

    async def embed_texts(self, batch) -> None:
        enc = B.m["encoders"]["text"]
        loop = asyncio.get_running_loop()

        def run() -> np.ndarray:
            ids = [TOKENIZER.encode(v, add_special_tokens=False).ids[: enc["max_length"]] for _, v, _ in batch]
            width = max(1, max(len(i) for i in ids))
            input_ids = np.full((len(ids), width), enc["pad_id"], dtype=np.int64)
            mask = np.zeros((len(ids), width), dtype=np.int64)
            for r, i in enumerate(ids):
                input_ids[r, : len(i)] = i
                mask[r, : len(i)] = 1
            return TEXT_ENC.run(None, {enc["inputs"]["input_ids"]: input_ids, enc["inputs"]["attention_mask"]: mask})[0]

        emb = await loop.run_in_executor(self.pool, run)
        await self.store([k for k, _, _ in batch], emb)


def preprocess(bodies: list[bytes], spec: dict) -> np.ndarray:
    h, w = spec["height"], spec["width"]
    mean = np.asarray(spec["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(spec["std"], dtype=np.float32)[:, None, None]
    out = np.empty((len(bodies), 3, h, w), dtype=np.float32)
    for i, b in enumerate(bodies):
        im = ImageOps.exif_transpose(Image.open(io.BytesIO(b)))
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            bg = Image.new("RGB", im.size, tuple(spec["background"]))
            bg.paste(im, mask=im.split()[-1])
            im = bg
        im = im.convert("RGB")
        if im.size != (w, h):
            im = im.resize((w, h), Image.LANCZOS)
        out[i] = (np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0 - mean) / std
    return out


# ----------------------------------------------------------------------------------- API

class FieldValues(BaseModel):
    categorical: dict[str, Union[str, list[str]]] = {}
    numeric: dict[str, float] = Field(default_factory=dict)

    model_config = {"ser_json_inf_nan": "null"}


class Item(FieldValues):
    id: str = Field(min_length=1, max_length=256)
    image_url: Optional[str] = Field(default=None, max_length=2048, pattern=r"^https?://")
    title: Optional[str] = Field(default=None, max_length=1024)


class Options(BaseModel):
    budget_ms: Optional[float] = Field(default=None, ge=1, le=60000)
    miss_policy: Optional[Literal["oov", "budget"]] = None


class PredictBody(BaseModel):
    context: Optional[FieldValues] = None
    items: list[Item] = Field(min_length=1, max_length=1000)
    options: Optional[Options] = None


STATE: dict = {}


@asynccontextmanager
async def lifespan(_: FastAPI):
    redis = aioredis.from_url(REDIS_URL, decode_responses=False) if REDIS_URL else None
    l1 = L1(L1_MAX_BYTES)
    emb = Embedder(l1, redis)
    emb.start()
    STATE.update(redis=redis, l1=l1, emb=emb)
    yield
    for t in emb.tasks:
        t.cancel()
    await emb.http.aclose()
    if redis is not None:
        await redis.aclose()


app = FastAPI(lifespan=lifespan, default_response_class=ORJSONResponse)


@app.get("/healthz")
async def healthz():
    return {"ok": True}


@app.get("/readyz")
async def readyz(response: Response):
    redis = STATE.get("redis")
    try:
        if redis is not None:
            await redis.ping()
        return {"ready": True}
    except Exception as err:  # noqa: BLE001 - readiness reports, it does not raise
        response.status_code = 503
        return {"ready": False, "error": str(err)}


@app.get("/stats")
async def stats():
    return STATS


async def lookup(keys: list[str], deadline: float) -> dict[str, tuple[np.ndarray, str]]:
    l1: L1 = STATE["l1"]
    redis: Optional[aioredis.Redis] = STATE["redis"]
    found, misses = {}, []
    for k in keys:
        v = l1.get(k)
        if v is not None:
            found[k] = (v, "l1")
        else:
            misses.append(k)
    STATS["l1_hit"] += len(found)
    STATS["l1_miss"] += len(misses)
    if misses and redis is not None:
        remaining = deadline - time.monotonic()
        try:
            values = await asyncio.wait_for(redis.mget(misses), timeout=max(0.001, remaining))
        except Exception:  # noqa: BLE001 - a slow or broken Redis reads as misses
            values = [None] * len(misses)
        for k, raw in zip(misses, values):
            modality = k.split(":")[-3]
            if raw is not None and len(raw) == 4 * B.dims[modality]:
                v = np.frombuffer(raw, dtype="<f4")
                l1.set(k, v)
                found[k] = (v, "l2")
                STATS["l2_hit"] += 1
            else:
                STATS["l2_miss"] += 1
    return found


@app.post("/predict")
async def predict(body: PredictBody):
    t0 = time.monotonic()
    budget = (body.options.budget_ms if body.options and body.options.budget_ms else BUDGET_MS) / 1000.0
    deadline = t0 + budget - 0.015
    items = body.items
    n = len(items)
    inputs = {"image": [it.image_url or None for it in items], "text": [it.title or None for it in items]}
    keys = {m: [cache_key(m, v) if v else None for v in vals] for m, vals in inputs.items()}
    found = await lookup(list({k for ks in keys.values() for k in ks if k}), deadline)
    t1 = time.monotonic()

    emb: Embedder = STATE["emb"]
    x = {}
    sources = {}
    for m in ("image", "text"):
        mat = np.empty((n, B.dims[m]), dtype=np.float32)
        oov = np.zeros((n, 1), dtype=np.float32)
        src = []
        for i, k in enumerate(keys[m]):
            hit = found.get(k) if k else None
            if hit is not None:
                mat[i] = hit[0]
                src.append(hit[1])
            else:
                mat[i] = B.oov[m]
                oov[i] = 1.0
                src.append("absent" if k is None else "oov")
                if k is not None:
                    emb.enqueue(m, k, inputs[m][i])
        x[m], x[m + "_oov"], sources[m] = mat, oov, src
        counts = STATS["sources"][m]
        for s in src:
            counts[s] = counts.get(s, 0) + 1

    fields = np.empty((n, B.fields_dim), dtype=np.float32)
    ctx = body.context or FieldValues()
    fill_fields(fields, B.ctx_fields, ctx.categorical, ctx.numeric)
    for i, it in enumerate(items):
        fill_fields(fields[i], B.item_fields, it.categorical, it.numeric)

    names = B.m["head"]["inputs"]
    outs = B.m["head"]["outputs"]
    pi, mu, sigma = HEAD.run([outs["pi"], outs["mu"], outs["sigma"]], {
        names["image"]: x["image"], names["image_oov"]: x["image_oov"],
        names["text"]: x["text"], names["text_oov"]: x["text_oov"], names["fields"]: fields,
    })
    t2 = time.monotonic()
    mean, std, quant, cal = ctr_stats(pi, mu, sigma)
    mean_l, std_l, cal_l, quant_l = mean.tolist(), std.tolist(), cal.tolist(), quant.T.tolist()
    pi_l, mu_l, sigma_l = pi.tolist(), mu.tolist(), sigma.tolist()
    predictions = [{
        "id": it.id,
        "ctr": {
            "mean": cal_l[i], "raw_mean": mean_l[i], "std": std_l[i],
            "quantiles": dict(zip(B.q_names, quant_l[i])),
            "components": [{"weight": w, "mu": m_, "sigma": s} for w, m_, s in zip(pi_l[i], mu_l[i], sigma_l[i])],
        },
        "sources": {"image": sources["image"][i], "text": sources["text"][i]},
    } for i, it in enumerate(items)]
    t3 = time.monotonic()
    return {
        "model": {"name": B.m["name"], "version": B.m["version"]},
        "predictions": predictions,
        "warnings": [],
        "timing_ms": {"total": round((t3 - t0) * 1000, 3), "lookup": round((t1 - t0) * 1000, 3),
                      "head": round((t2 - t1) * 1000, 3), "stats": round((t3 - t2) * 1000, 3)},
    }
