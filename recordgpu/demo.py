"""``make demo``: a real end-to-end job on a generated sample.

Generates a small folder of 8-bit colour JPEGs and 16-bit grayscale PNGs holding 12-bit values, makes
``.lst`` files and packs them with im2rec (the PNGs with ``--color -1 --encoding .png`` so they stay 16-bit),
reads the ``.rec`` files back and checks the 16-bit pixels survived, then iterates both with
``ImageRecordIter`` and prints throughput.

    python -m recordgpu.demo --out demo
"""
from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np


def make_sample(root: str, n_color: int = 48, n_gray: int = 32, seed: int = 0) -> None:
    """Write ``root/color/<class>/*.jpg`` (8-bit) and ``root/gray16/<class>/*.png`` (16-bit, 12-bit values)."""
    rng = np.random.default_rng(seed)
    for i in range(n_color):
        h, w = int(rng.integers(180, 320)), int(rng.integers(200, 360))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.stack([(xx / w * 255), (yy / h * 255), np.full((h, w), 40.0 * (i % 6), np.float32)], -1)
        cv2.circle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(10, 80)),
                   tuple(float(v) for v in rng.integers(0, 255, 3)), -1)
        d = os.path.join(root, "color", f"class{i % 3}")
        os.makedirs(d, exist_ok=True)
        cv2.imwrite(os.path.join(d, f"img{i:03d}.jpg"), img.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    for i in range(n_gray):
        h = w = 256
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        body = ((xx - w / 2) ** 2 / (0.4 * w) ** 2 + (yy - h / 2) ** 2 / (0.3 * h) ** 2) < 1
        organ = ((xx - w * 0.4) ** 2 + (yy - h * 0.45) ** 2) < (20 + i) ** 2
        img = 200 + body * 800 + organ * 1500 + rng.normal(0, 30, (h, w))
        img = np.clip(img, 0, 4095).astype(np.uint16)  # 12-bit content in a 16-bit PNG
        d = os.path.join(root, "gray16", f"class{i % 2}")
        os.makedirs(d, exist_ok=True)
        cv2.imwrite(os.path.join(d, f"scan{i:03d}.png"), img)


def _im2rec(*args: str) -> None:
    from .im2rec import main as im2rec_main

    rc = im2rec_main(list(args))
    if rc:
        raise SystemExit(f"im2rec {' '.join(args)} failed with exit code {rc}")


def _iterate(title: str, epochs: int = 2, **kw) -> None:
    from . import ImageRecordIter

    it = ImageRecordIter(**kw)
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        it.reset()
        for batch in it:
            n += batch.data[0].shape[0] - batch.pad
            first = batch
    dt = time.perf_counter() - t0
    x = first.data[0]
    print(f"  {title}: batches of {tuple(x.shape)} {x.dtype}, value range {float(x.min()):.4g}..{float(x.max()):.4g}, "
          f"{n} images in {dt:.2f}s = {n / dt:,.0f} img/s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo", help="work folder (default ./demo)")
    args = ap.parse_args(argv)
    out = os.path.abspath(args.out)
    root = os.path.join(out, "images")
    print(f"1. generating sample images in {root}")
    make_sample(root)
    print("2. packing with im2rec")
    color_prefix, gray_prefix = os.path.join(out, "color"), os.path.join(out, "gray16")
    _im2rec(color_prefix, os.path.join(root, "color"), "--list", "--recursive")
    _im2rec(color_prefix, os.path.join(root, "color"), "--resize", "256", "--quality", "90", "--num-thread", "2")
    _im2rec(gray_prefix, os.path.join(root, "gray16"), "--list", "--recursive")
    _im2rec(gray_prefix, os.path.join(root, "gray16"), "--color", "-1", "--encoding", ".png")
    print("3. reading back")
    from .recinfo import rec_info
    from . import recordio

    for prefix in (color_prefix, gray_prefix):
        for line in rec_info(prefix + ".rec", prefix + ".idx").lines():
            print("  " + line)
    r = recordio.MXIndexedRecordIO(gray_prefix + ".idx", gray_prefix + ".rec", "r")
    lst = {int(l.split("\t")[0]): l.split("\t")[-1] for l in open(gray_prefix + ".lst").read().splitlines()}
    exact = 0
    for k in r.keys:
        _, img = recordio.unpack_img(r.read_idx(k))
        src = cv2.imread(os.path.join(root, "gray16", lst[k]), cv2.IMREAD_UNCHANGED)
        exact += bool(np.array_equal(img, src))
    print(f"  16-bit round trip: {exact}/{len(r.keys)} images bit-exact (max value {int(img.max())}, 12-bit content)")
    print("4. iterating with recordgpu.ImageRecordIter")
    _iterate("colour eval", path_imgrec=color_prefix + ".rec", path_imgidx=color_prefix + ".idx",
             data_shape=(3, 224, 224), batch_size=16, resize=256, mean_r=123.68, mean_g=116.28, mean_b=103.53,
             std_r=58.395, std_g=57.12, std_b=57.375, preprocess_threads=2)
    _iterate("colour train", path_imgrec=color_prefix + ".rec", path_imgidx=color_prefix + ".idx",
             data_shape=(3, 224, 224), batch_size=16, random_resized_crop=True, min_random_area=0.3,
             rand_mirror=True, shuffle=True, preprocess_threads=2)
    _iterate("gray16 -> uint16", path_imgrec=gray_prefix + ".rec", path_imgidx=gray_prefix + ".idx",
             data_shape=(1, 224, 224), batch_size=8, dtype="uint16", preprocess_threads=2)
    _iterate("gray16 -> float32", path_imgrec=gray_prefix + ".rec", path_imgidx=gray_prefix + ".idx",
             data_shape=(1, 224, 224), batch_size=8, mean_r=2048, std_r=1024, rand_mirror=True,
             preprocess_threads=2)
    print("done.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
