"""Datasets for the iterator benchmark, generated once into ``bench/data`` and reused.

* ``photos``: ImageNet-like JPEGs (quality 90, 400-640 x 300-500 px) cut from real photographs, the
  sample images that scikit-image ships (install it into the bench environment: ``pip install
  scikit-image``; it is not a dependency of recordgpu). Random scales, crops, flips and a mild colour
  cast give every record its own content. Without scikit-image (or with ``source="synthetic"``) the
  photographs are replaced by procedurally drawn scenes, and the dataset says so.
* ``ct16``: 512 x 512 16-bit PNGs with 12-bit CT-like content (values 0..4095): a body ellipse with
  lungs, organs, spine and ribs at CT-like levels, smoothed, plus noise.

Records are ``IRHeader(0, label, i, 0)`` + the encoded image, written with
``recordgpu.recordio.MXIndexedRecordIO`` (so ``.rec`` + ``.idx``).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from recordgpu.recordio import IRHeader, MXIndexedRecordIO, pack

_VERSION = 1
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg",
                  "ihc.png", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg")
PHOTO_W, PHOTO_H = (400, 640), (300, 500)
JPEG_QUALITY = 90


@dataclass(frozen=True)
class ImageDataset:
    """A generated ``.rec`` + ``.idx``; ``kind`` is ``rgb`` (8-bit JPEG) or ``gray16`` (16-bit PNG)."""

    name: str
    kind: str
    rec: Path
    idx: Path
    records: int
    file_bytes: int
    source: str


# --- photo sources ------------------------------------------------------------------------------------
def skimage_photos() -> list[np.ndarray]:
    """The colour photographs bundled with scikit-image, as BGR uint8 (ImportError without it)."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    imgs = [cv2.imread(str(folder / name), cv2.IMREAD_COLOR) for name in SKIMAGE_PHOTOS]
    imgs = [im for im in imgs if im is not None]
    if not imgs:
        raise ImportError(f"no sample photographs found in {folder}")
    return imgs


def synthetic_photos(n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Procedural stand-ins for photographs: gradients, filled shapes, texture noise, blur (BGR uint8)."""
    rng = np.random.default_rng(seed)
    out = []
    h, w = 560, 720
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / (w + h) + 0.5
        img = (c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]).astype(np.float32)
        for _ in range(int(rng.integers(6, 16))):
            color = tuple(float(v) for v in rng.uniform(0, 255, 3))
            center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            if rng.random() < 0.5:
                axes = (int(rng.integers(20, 200)), int(rng.integers(20, 200)))
                cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
            else:
                pt2 = (center[0] + int(rng.integers(30, 250)), center[1] + int(rng.integers(30, 250)))
                cv2.rectangle(img, center, pt2, color, -1)
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.8, 2.5)))
        img += rng.normal(0, rng.uniform(3, 12), img.shape).astype(np.float32)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def photo_sources(source: str = "auto") -> tuple[list[np.ndarray], str]:
    """``(images, description)`` for ``source`` in auto | skimage | synthetic."""
    if source not in ("auto", "skimage", "synthetic"):
        raise ValueError(f"photo source must be auto, skimage or synthetic, got {source!r}")
    if source != "synthetic":
        try:
            return skimage_photos(), "scikit-image sample photographs"
        except ImportError as e:
            if source == "skimage":
                raise ImportError(f"scikit-image sample photographs unavailable ({e}); "
                                  "`pip install scikit-image` into the bench environment") from None
    why = "requested" if source == "synthetic" else "scikit-image not installed"
    return synthetic_photos(), f"synthetic scenes ({why})"


def random_view(src: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random ImageNet-sized view of ``src``: scale, crop to 400-640 x 300-500, flip, colour cast."""
    w = int(rng.integers(PHOTO_W[0], PHOTO_W[1] + 1))
    h = int(rng.integers(PHOTO_H[0], PHOTO_H[1] + 1))
    sh, sw = src.shape[:2]
    scale = max(w / sw, h / sh) * rng.uniform(1.0, 1.8)
    nw, nh = max(w, int(round(sw * scale))), max(h, int(round(sh * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    big = cv2.resize(src, (nw, nh), interpolation=interp)
    y, x = int(rng.integers(0, nh - h + 1)), int(rng.integers(0, nw - w + 1))
    img = big[y:y + h, x:x + w]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    cast = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return np.clip(img.astype(np.float32) * cast, 0, 255).astype(np.uint8)


# --- CT-like 16-bit images ----------------------------------------------------------------------------
def ct_slice(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """A 12-bit CT-like axial slice in uint16 (stored value = HU + 1024, clipped to 0..4095)."""
    img = np.zeros((size, size), np.float32)
    s = size / 512.0
    cx, cy = size / 2 + rng.normal(0, 10 * s), size / 2 + rng.normal(0, 10 * s)
    ax, ay = rng.uniform(170, 235) * s, rng.uniform(120, 175) * s

    def ell(c, axes, value, angle=0.0):
        cv2.ellipse(img, (int(c[0]), int(c[1])), (max(1, int(axes[0])), max(1, int(axes[1]))), angle, 0, 360,
                    float(value), -1)

    ell((cx, cy), (ax, ay), 1024 - 90)  # subcutaneous fat
    ell((cx, cy), (ax - 12 * s, ay - 12 * s), rng.uniform(1060, 1090))  # soft tissue
    for side in (-1, 1):  # lungs
        ell((cx + side * ax * 0.45, cy - ay * 0.1), (ax * 0.33, ay * 0.6), rng.uniform(150, 260),
            rng.uniform(-15, 15))
    for _ in range(int(rng.integers(3, 7))):  # organs / vessels
        ell((cx + rng.uniform(-0.5, 0.5) * ax, cy + rng.uniform(-0.2, 0.6) * ay),
            (rng.uniform(8, 45) * s, rng.uniform(8, 40) * s), rng.uniform(1030, 1300), rng.uniform(0, 180))
    ell((cx, cy + ay * 0.7), (22 * s, 20 * s), rng.uniform(1800, 2600))  # vertebra
    ell((cx, cy + ay * 0.7), (9 * s, 8 * s), 1060)  # spinal canal
    for k in range(12):  # ribs along the body wall
        t = np.pi * (0.15 + 0.7 * k / 11) + (np.pi if k % 2 else 0)
        ell((cx + (ax - 25 * s) * np.cos(t), cy + (ay - 22 * s) * np.sin(t)), (6 * s, 9 * s),
            rng.uniform(1600, 2400))
    img = cv2.GaussianBlur(img, (0, 0), 1.2 * s)
    img += rng.normal(0, rng.uniform(12, 25), img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 4095).astype(np.uint16)


# --- writing and reuse --------------------------------------------------------------------------------
def _paths(data_dir: Path, stem: str) -> tuple[Path, Path, Path]:
    return data_dir / f"{stem}.rec", data_dir / f"{stem}.idx", data_dir / f"{stem}.json"


def _reuse(rec: Path, idx: Path, manifest: Path, want: dict) -> dict | None:
    if not (rec.exists() and idx.exists() and manifest.exists()):
        return None
    try:
        have = json.loads(manifest.read_text())
    except ValueError:
        return None
    if {k: have.get(k) for k in want} != want or have.get("file_bytes") != rec.stat().st_size:
        return None
    return have


def _write(rec: Path, idx: Path, manifest: Path, want: dict, payloads) -> dict:
    tmp_rec, tmp_idx = rec.with_name(rec.name + ".tmp"), idx.with_name(idx.name + ".tmp")
    w = MXIndexedRecordIO(tmp_idx, tmp_rec, "w")
    n = 0
    try:
        for label, buf in payloads:
            w.write_idx(n, pack(IRHeader(0, float(label), n, 0), buf))
            n += 1
    finally:
        w.close()
    os.replace(tmp_rec, rec)
    os.replace(tmp_idx, idx)
    have = {**want, "records": n, "file_bytes": rec.stat().st_size}
    manifest.write_text(json.dumps(have, indent=2) + "\n")
    return have


def build_photos(data_dir: str | os.PathLike, n: int = 2000, seed: int = 0, source: str = "auto",
                 log: Callable[[str], None] = print) -> ImageDataset:
    """Create or reuse ``photos_n<n>.rec/.idx``: ``n`` JPEG q90 images of 400-640 x 300-500 px."""
    if n < 1:
        raise ValueError(f"need at least one photo, got {n}")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    srcs, desc = photo_sources(source)
    rec, idx, manifest = _paths(data_dir, f"photos_n{n}" if desc.startswith("scikit") else f"photos_synth_n{n}")
    want = {"version": _VERSION, "kind": "rgb", "n": n, "seed": seed, "source": desc,
            "quality": JPEG_QUALITY}
    have = _reuse(rec, idx, manifest, want)
    if have is None:
        log(f"generating {rec}: {n} JPEGs from {desc} ...")
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)

        def payloads():
            for i in range(n):
                img = random_view(srcs[int(rng.integers(len(srcs)))], rng)
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    raise RuntimeError("cv2.imencode failed to write a JPEG")
                yield i % 1000, buf.tobytes()

        have = _write(rec, idx, manifest, want, payloads())
        log(f"  {have['records']} records, {have['file_bytes'] / 1e6:,.1f} MB in {time.perf_counter() - t0:.1f} s")
    return ImageDataset("photos", "rgb", rec, idx, int(have["records"]), int(have["file_bytes"]), desc)


def build_ct16(data_dir: str | os.PathLike, n: int = 600, seed: int = 0, size: int = 512,
               log: Callable[[str], None] = print) -> ImageDataset:
    """Create or reuse ``ct16_n<n>.rec/.idx``: ``n`` 16-bit PNGs of ``size``² with 12-bit CT-like content."""
    if n < 1:
        raise ValueError(f"need at least one image, got {n}")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    rec, idx, manifest = _paths(data_dir, f"ct16_n{n}" + ("" if size == 512 else f"_{size}px"))
    desc = "synthetic 12-bit CT-like slices in 16-bit PNG"
    want = {"version": _VERSION, "kind": "gray16", "n": n, "seed": seed, "size": size, "source": desc}
    have = _reuse(rec, idx, manifest, want)
    if have is None:
        log(f"generating {rec}: {n} 16-bit PNGs of {size}x{size} ...")
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)

        def payloads():
            for i in range(n):
                ok, buf = cv2.imencode(".png", ct_slice(rng, size), [cv2.IMWRITE_PNG_COMPRESSION, 3])
                if not ok:
                    raise RuntimeError("cv2.imencode failed to write a 16-bit PNG")
                yield i % 10, buf.tobytes()

        have = _write(rec, idx, manifest, want, payloads())
        log(f"  {have['records']} records, {have['file_bytes'] / 1e6:,.1f} MB in {time.perf_counter() - t0:.1f} s")
    return ImageDataset("ct16", "gray16", rec, idx, int(have["records"]), int(have["file_bytes"]), desc)
