"""Turn augmentation parameters plus an image's shape into a :class:`SamplePlan`, drawing MXNet's RNG.

:class:`Planner` reproduces ``DefaultImageAugmenter::Process`` and the draws of ``ParseChunk`` (spec §3.7,
§3.8, §3.12): the same random numbers, drawn in the same order from a :class:`recordgpu.rng.MT19937`, with
every float computed in float32 as MXNet's C++ ``float`` code does. It needs only the decoded image's
shape, never its pixels, so plans can be made ahead of (or apart from) decoding.

The caller owns the RNG stream. With ``preprocess_threads=1`` MXNet uses one ``MT19937(111)`` for all
records in parse order; with ``seed_aug=S`` it reseeds the engine to ``slot + S + 111`` before each record,
where ``slot`` is the record's position counter in MXNet's current ``ParseChunk`` call: pass it as
``slot``.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from ..rng import MT19937, NormalFloat, bernoulli_half, shuffle, u01, uniform_int, uniform_real
from .params import AugmentParams
from .plan import (HSL, Brightness, Contrast, Crop, CropResize, MeanImage, Normalize, Pad, PCANoise,
                   Resize, Saturation, SamplePlan, Stage, Warp, check_output_dtype, colour_unit)

F32 = np.float32
RAND_MAGIC = 111  # MXNet's kRandMagic
_SWAP = {1: (0,), 3: (2, 1, 0), 4: (2, 1, 0, 3)}
# AlexNet PCA lighting: eigval[i] * eigvec[r][i], products taken in double and stored as float (spec §3.7)
_EIGVAL = (55.46, 4.794, 1.148)
_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
_PCA_E = tuple(tuple(F32(_EIGVAL[i] * _EIGVEC[r][i]) for i in range(3)) for r in range(3))


def _round_half_away(v: np.float32) -> int:
    """C ``std::round`` (half away from zero) then ``(int)``."""
    return int(math.copysign(math.floor(abs(float(v)) + 0.5), float(v)))


class Planner:
    """Makes :class:`SamplePlan` objects for one parameter set.

    ``mean_image``: the loaded mean image ``(C, H, W)`` (RGB(A) order, source units) when
    ``params.mean_img`` is set; it is ignored for the raw outputs (uint8, uint16), as MXNet does.
    """

    def __init__(self, params: AugmentParams, mean_image: np.ndarray | MeanImage | None = None) -> None:
        self.params = params
        p = params
        c, h, w = p.data_shape
        self._mean_image: MeanImage | None = None
        if mean_image is not None and not p.raw_output:
            mi = mean_image if isinstance(mean_image, MeanImage) else MeanImage(mean_image)
            if mi.shape != (c, h, w):
                raise ValueError(f"mean image has shape {mi.shape}, but data_shape is {(c, h, w)}")
            self._mean_image = mi
        elif p.mean_img and not p.raw_output and mean_image is None:
            raise ValueError(f"mean_img={p.mean_img!r} is set: load it and pass the (C, H, W) array as mean_image")
        self._amin, self._amax = p.aspect_bounds
        fv = float(p.fill_value)
        # MXNet passes cv::Scalar(fill, fill, fill): a fourth (alpha) channel is filled with 0
        self._fill = {1: (fv,), 3: (fv, fv, fv), 4: (fv, fv, fv, 0.0)}[c]
        self._normalize_cache: dict[tuple[float, float, bool], Normalize] = {}  # Normalize stages are immutable

    # --- public API ---------------------------------------------------------------------------------
    def plan_sample(self, src_h: int, src_w: int, src_c: int, rng: MT19937, *, slot: int | None = None,
                    src_dtype: str | np.dtype = "uint8",
                    rescale: tuple[float, float] | None = None) -> SamplePlan:
        """Plan one record whose decoded image is ``(src_h, src_w, src_c)`` of ``src_dtype``.

        Draws from ``rng`` exactly as MXNet does for this record. With ``seed_aug`` set, ``slot`` is
        required and ``rng`` is reseeded to ``slot + seed_aug + 111`` first. ``rescale``: the record's
        ``(RescaleSlope, RescaleIntercept)`` for ``intensity_units='modality'`` (default (1, 0)). The
        intensity options draw nothing, so they never change MXNet's random stream.
        """
        p = self.params
        src_dtype = np.dtype(src_dtype).name
        check_output_dtype(src_dtype, p.dtype)
        if src_c != p.channels:
            raise ValueError(f"decoded image has {src_c} channels, data_shape asks for {p.channels}")
        if src_h <= 0 or src_w <= 0:
            raise ValueError(f"cannot augment an empty image ({src_h}x{src_w})")
        if p.hsl_enabled and src_dtype not in ("uint8", "uint16"):
            raise ValueError(f"HSL jitter (random_h/s/l) needs uint8 or uint16 images, got {src_dtype}")
        if p.seed_aug is not None:
            if slot is None:
                raise ValueError("seed_aug is set: pass the record's slot (MXNet reseeds per slot)")
            rng.reseed((int(slot) + p.seed_aug + RAND_MAGIC) & 0xFFFFFFFF)

        stages: list[Stage] = []
        rows, cols = int(src_h), int(src_w)
        rows, cols = self._resize(rows, cols, rng, stages)
        rows, cols = self._warp(rows, cols, rng, stages)
        if p.pad > 0:
            stages.append(Pad(p.pad, self._fill))
            rows, cols = rows + 2 * p.pad, cols + 2 * p.pad
        self._crop(rows, cols, rng, stages)
        self._colour(rng, stages, src_dtype)
        intensity = p.intensity_stage(*(rescale if rescale is not None else (1.0, 0.0)))
        if intensity is not None:
            stages.append(intensity)
        stages.append(self._normalize(rng))
        c, h, w = p.data_shape
        return SamplePlan(src_shape=(int(src_h), int(src_w), int(src_c)), src_dtype=src_dtype,
                          out_shape=(c, h, w), stages=tuple(stages))

    def plan_batch(self, shapes: Iterable[Sequence[int]], rng: MT19937, slots: Sequence[int] | None = None,
                   src_dtypes: str | Sequence[str] = "uint8") -> list[SamplePlan]:
        """Plan records in parse order. ``shapes``: ``(h, w, c)`` per record; ``slots``: MXNet slot per
        record (needed with ``seed_aug``; defaults to 0, 1, 2, ...)."""
        shapes = list(shapes)
        if slots is None:
            slots = range(len(shapes))
        elif len(slots) != len(shapes):
            raise ValueError(f"{len(slots)} slots for {len(shapes)} shapes")
        if isinstance(src_dtypes, (str, np.dtype, type)):
            src_dtypes = [src_dtypes] * len(shapes)
        return [self.plan_sample(int(s[0]), int(s[1]), int(s[2]), rng, slot=int(k), src_dtype=dt)
                for s, k, dt in zip(shapes, slots, src_dtypes)]

    # --- stages -------------------------------------------------------------------------------------
    def _interp(self, old_w: int, old_h: int, new_w: int, new_h: int, rng: MT19937) -> int:
        """MXNet's ``GetInterMethod``: 9 = auto by direction, 10 = random (one draw per call)."""
        m = self.params.inter_method
        if m == 9:
            if new_w > old_w and new_h > old_h:
                return 2
            if new_w < old_w and new_h < old_h:
                return 3
            return 1
        if m == 10:
            return uniform_int(rng, 0, 4)
        return m

    def _resize(self, rows: int, cols: int, rng: MT19937, stages: list[Stage]) -> tuple[int, int]:
        r = self.params.resize
        if r == -1:
            return rows, cols
        if rows > cols:
            new_h, new_w = r * rows // cols, r
        else:
            new_h, new_w = r, r * cols // rows
        if new_h <= 0 or new_w <= 0:
            raise ValueError(f"resize={r} turns a {cols}x{rows} image into an empty one ({new_w}x{new_h})")
        stages.append(Resize(new_w, new_h, self._interp(cols, rows, new_w, new_h, rng)))
        return new_h, new_w

    def _warp(self, rows: int, cols: int, rng: MT19937, stages: list[Stage]) -> tuple[int, int]:
        p = self.params
        if not p.warp_enabled:
            return rows, cols
        msr = F32(p.max_shear_ratio)
        s = F32(F32(F32(u01(rng) * msr) * F32(2)) - msr)
        angle = uniform_int(rng, -p.max_rotate_angle, p.max_rotate_angle)
        if p.rotate > 0:
            angle = p.rotate
        if p.rotate_list:
            angle = p.rotate_list[uniform_int(rng, 0, len(p.rotate_list) - 1)]
        a = F32(math.cos(angle / 180.0 * math.pi))
        b = F32(math.sin(angle / 180.0 * math.pi))
        scale = F32(1)
        ratio = F32(1)
        if not p.random_resized_crop:
            lo, hi = F32(p.min_random_scale), F32(p.max_random_scale)
            scale = F32(F32(u01(rng) * F32(hi - lo)) + lo)
            ratio = F32(F32(u01(rng) * F32(self._amax - self._amin)) + self._amin)
        hs = F32(F32(F32(2) * scale) / F32(F32(1) + ratio))
        ws = F32(ratio * hs)
        max_img, min_img = F32(p.max_img_size), F32(p.min_img_size)
        new_w = max(min_img, min(max_img, F32(scale * F32(cols))))
        new_h = max(min_img, min(max_img, F32(scale * F32(rows))))
        m00 = F32(F32(hs * a) - F32(F32(s * b) * ws))
        m10 = F32(-b * ws)
        m01 = F32(F32(hs * b) + F32(F32(s * a) * ws))
        m11 = F32(a * ws)
        ocw = F32(F32(m00 * F32(cols)) + F32(m01 * F32(rows)))
        och = F32(F32(m10 * F32(cols)) + F32(m11 * F32(rows)))
        tx = F32(F32(new_w - ocw) / F32(2))
        ty = F32(F32(new_h - och) / F32(2))
        out_w, out_h = int(new_w), int(new_h)  # float -> int truncates
        if out_w <= 0 or out_h <= 0:
            raise ValueError(f"the affine transform gives an empty image ({out_w}x{out_h}) from {cols}x{rows}")
        interp = self._interp(cols, rows, out_w, out_h, rng)
        matrix = tuple(float(v) for v in (m00, m01, tx, m10, m11, ty))
        stages.append(Warp(matrix, out_w, out_h, interp, self._fill))  # type: ignore[arg-type]
        return out_h, out_w

    def _crop(self, rows: int, cols: int, rng: MT19937, stages: list[Stage]) -> None:
        p = self.params
        _, H, W = p.data_shape
        if p.rrc_active and self._random_resized_crop(rows, cols, rng, stages):
            return
        if p.crop_size_enabled:
            if not (cols >= p.max_crop_size and rows >= p.max_crop_size):
                raise ValueError(f"input image size smaller than max_crop_size ({cols}x{rows} < "
                                 f"{p.max_crop_size})")
            c = uniform_int(rng, p.min_crop_size, p.max_crop_size)
            y, x = rows - c, cols - c
            if p.rand_crop:
                y = uniform_int(rng, 0, y)
                x = uniform_int(rng, 0, x)
            else:
                y, x = y // 2, x // 2
            stages.append(CropResize(x, y, c, c, W, H, self._interp(c, c, W, H, rng)))
            return
        # centre / random crop; a smaller image is first upscaled keeping its aspect (never padded)
        m = self._interp(cols, rows, W, H, rng)
        if rows < H:
            cols = int(F32(F32(F32(H) / F32(rows)) * F32(cols)))
            rows = H
            if cols <= 0:
                raise ValueError("input image size smaller than input shape (upscaling gives an empty image)")
            stages.append(Resize(cols, rows, m))
        if cols < W:
            rows = int(F32(F32(F32(W) / F32(cols)) * F32(rows)))
            cols = W
            stages.append(Resize(cols, rows, m))
        if not (rows >= H and cols >= W):
            raise ValueError(f"input image size smaller than input shape ({cols}x{rows} < {W}x{H})")
        y, x = rows - H, cols - W
        if p.rand_crop:
            y = uniform_int(rng, 0, y)
            x = uniform_int(rng, 0, x)
        else:
            y, x = y // 2, x // 2
        stages.append(Crop(x, y, W, H))

    def _random_resized_crop(self, rows: int, cols: int, rng: MT19937, stages: list[Stage]) -> bool:
        p = self.params
        _, H, W = p.data_shape
        area = F32(rows * cols)
        for _ in range(10):
            ra = uniform_real(rng, p.min_random_area, p.max_random_area)
            r = uniform_real(rng, self._amin, self._amax)
            ta = F32(area * ra)
            y_area = _round_half_away(np.sqrt(F32(ta / r)))
            x_area = _round_half_away(np.sqrt(F32(ta * r)))
            if u01(rng) > F32(0.5):
                y_area, x_area = x_area, y_area
            if y_area <= rows and x_area <= cols:
                y = uniform_int(rng, 0, rows - y_area)
                x = uniform_int(rng, 0, cols - x_area)
                if y_area <= 0 or x_area <= 0:
                    raise ValueError(f"random_resized_crop drew an empty crop ({x_area}x{y_area}); "
                                     "raise min_random_area")
                stages.append(CropResize(x, y, x_area, y_area, W, H, self._interp(x_area, y_area, W, H, rng)))
                return True
        return False

    def _colour(self, rng: MT19937, stages: list[Stage], src_dtype: str) -> None:
        p = self.params
        unit = colour_unit(src_dtype)
        if p.jitter_enabled:
            one = F32(1)
            ab = F32(one + uniform_real(rng, -p.brightness, p.brightness))
            ac = F32(one + uniform_real(rng, -p.contrast, p.contrast))
            as_ = F32(one + uniform_real(rng, -p.saturation, p.saturation))
            order = shuffle([0, 1, 2], rng)
            steps = (Brightness(float(ab)), Contrast(float(ac)), Saturation(float(as_)))
            stages.extend(steps[i] for i in order)
        if p.hsl_enabled:
            d = []
            for lim in (p.random_h, p.random_s, p.random_l):
                r = u01(rng)
                r = F32(r + F32(F32(4) * u01(rng)))
                r = F32(r / F32(5))
                flim = F32(lim)
                d.append(int(F32(F32(F32(r * flim) * F32(2)) - flim)))  # float -> int truncates
            dh, ds, dl = d
            stages.append(HSL(dh, float(ds * unit), float(dl * unit)))
        if p.pca_enabled:
            nd = NormalFloat(0.0, p.pca_noise)  # MXNet makes a fresh distribution per image
            alpha = (nd(rng), nd(rng), nd(rng))
            pr, pg, pb = (F32(F32(F32(e[0] * alpha[0]) + F32(e[1] * alpha[1])) + F32(e[2] * alpha[2]))
                          for e in _PCA_E)
            add = tuple(float(F32(v * F32(unit))) for v in (pb, pg, pr))
            stages.append(PCANoise(add))  # type: ignore[arg-type]

    def _normalize(self, rng: MT19937) -> Normalize:
        p = self.params
        c = p.channels
        mirror = p.mirror
        if p.rand_mirror:
            mirror = bernoulli_half(rng) or p.mirror
        if p.raw_output:
            return Normalize(p.dtype, _SWAP[c], mirror, (0.0,) * c, (1.0,) * c, (0.0,) * c, None)
        mrc, mri, sc = F32(p.max_random_contrast), F32(p.max_random_illumination), F32(p.scale)
        contrast = F32(F32(F32(F32(F32(u01(rng) * mrc) * F32(2)) - mrc) + F32(1)) * sc)
        illum = F32(F32(F32(F32(u01(rng) * mri) * F32(2)) - mri) * sc)
        key = (float(contrast), float(illum), mirror)  # without random contrast / illumination: one key
        cached = self._normalize_cache.get(key)
        if cached is None:
            if len(self._normalize_cache) >= 4096:
                self._normalize_cache.clear()
            cached = self._normalize_cache[key] = self._normalize_stage(contrast, illum, mirror)
        return cached

    def _normalize_stage(self, contrast: np.float32, illum: np.float32, mirror: bool) -> Normalize:
        p = self.params
        c = p.channels
        std = [F32(v) for v in p.std_rgba[:c]]
        if self._mean_image is not None:
            mean = (0.0,) * c
        else:
            mean = tuple(float(F32(v)) for v in p.mean_rgba[:c])
        if p.dtype in ("float32", "float16"):
            with np.errstate(divide="ignore", invalid="ignore"):  # std 0 gives inf, as in MXNet
                mult = tuple(float(F32(contrast / s)) for s in std)
                bias = tuple(float(F32(illum / s)) for s in std)
        else:  # int8 / int16: std, scale, contrast and illumination are ignored (their draws still happen)
            mult, bias = (1.0,) * c, (0.0,) * c
        return Normalize(p.dtype, _SWAP[c], mirror, mean, mult, bias, self._mean_image)


__all__ = ["Planner", "RAND_MAGIC"]
