"""Pack :class:`SamplePlan` objects into the kernels' per-sample ``RgStep`` structs (one place for the
host build and the GPU launch).

A plan becomes a short list of *steps* per sample. A step is one geometric operation on a window of its
input (copy, pad, resize, warp; a later ``Crop`` only narrows the region the step computes), then a chain
of colour stages, then either an intermediate image in the source dtype (scratch memory) or the sample's
normalised output. The common plan (resize, crop, mirror, normalise, cast) is one step; each further
resampling is another, so every stage's result is rounded to the source dtype as in the host reference.
Contrast needs the gray mean of its input image: a mean pass per Contrast stage precedes the step. A
``FloatIntensity`` is the last colour entry of the normalising step and hands float32 values to the
output; for zscore / percentile its statistics come from a pass of the same kernel over its input image,
which is first written to scratch when it would otherwise be resampled again on every pass.

:func:`compile_batch` returns a :class:`BatchProgram`: per source dtype, an ordered list of
:class:`Launch` es holding numpy structured arrays laid out exactly like ``kernels/rg_params.cuh``. Buffer
addresses are symbolic until :meth:`BatchProgram.bind` fills them in (host: numpy addresses; GPU: device
pointers), so the executor layers only allocate, bind and launch::

    prog = compile_batch(plans)
    prog.bind(src_addrs, scratch_addr, out_addr, mean_addrs)
    for launch in prog.launches:
        for slot in range(launch.n_contrast):
            mean kernel  rg_mean_<launch.kernel_suffix>(launch.steps, n, slot, tables)
        step kernel      rg_step_<launch.kernel_suffix>(launch.steps, n, tables)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..augment.plan import (invert_affine,
                            HSL, Brightness, Contrast, Crop, CropResize, FloatIntensity, Intensity, MeanImage,
                            Normalize, Pad, PCANoise, Resize, Saturation, SamplePlan, Warp, check_float_intensity,
                            check_output_dtype)

# --- the struct layouts (kernels/rg_params.cuh) ----------------------------------------------------------
MAX_C, MAX_COLOUR, MAX_CONTRAST = 4, 8, 4

GEOM_DTYPE = np.dtype([
    ("m", "<f8", (6,)), ("scale_x", "<f8"), ("scale_y", "<f8"), ("inv_scale_x", "<f8"), ("inv_scale_y", "<f8"),
    ("src", "<u8"), ("src_stride", "<i4"), ("win_w", "<i4"), ("win_h", "<i4"), ("kind", "<i4"), ("mode", "<i4"),
    ("full_w", "<i4"), ("full_h", "<i4"), ("crop_x", "<i4"), ("crop_y", "<i4"), ("out_w", "<i4"),
    ("out_h", "<i4"), ("pad", "<i4"), ("iscale_x", "<i4"), ("iscale_y", "<i4"), ("fill", "<f4", (4,)),
    ("reserved_", "<i4"),
], align=True)
COLOUR_DTYPE = np.dtype([
    ("kind", "<i4"), ("ival", "<i4"), ("slot", "<i4"), ("flags", "<i4"), ("a", "<f4"), ("b", "<f4"),
    ("v", "<f4", (3,)), ("w", "<f4", (5,)),
], align=True)
NORM_DTYPE = np.dtype([
    ("dst", "<u8"), ("mean_img", "<u8"), ("out_dtype", "<i4"), ("mirror", "<i4"), ("swap", "<i4", (4,)),
    ("mean", "<f4", (4,)), ("mult", "<f4", (4,)), ("bias", "<f4", (4,)), ("imean", "<i4", (4,)),
], align=True)
STEP_DTYPE = np.dtype([
    ("geom", GEOM_DTYPE), ("norm", NORM_DTYPE), ("means", "<f8", (MAX_CONTRAST,)), ("dst", "<u8"),
    ("out_kind", "<i4"), ("c", "<i4"), ("n_colour", "<i4"), ("reserved_", "<i4"),
    ("colour", COLOUR_DTYPE, (MAX_COLOUR,)),
], align=True)

# (name, value) pairs the C side must agree with (host: rg_host_layout; NVRTC: static_asserts)
LAYOUT = (
    ("sizeof(RgGeom)", GEOM_DTYPE.itemsize), ("sizeof(RgColour)", COLOUR_DTYPE.itemsize),
    ("sizeof(RgNorm)", NORM_DTYPE.itemsize), ("sizeof(RgStep)", STEP_DTYPE.itemsize),
    ("offsetof(RgStep, norm)", STEP_DTYPE.fields["norm"][1]),
    ("offsetof(RgStep, means)", STEP_DTYPE.fields["means"][1]),
    ("offsetof(RgStep, dst)", STEP_DTYPE.fields["dst"][1]),
    ("offsetof(RgStep, colour)", STEP_DTYPE.fields["colour"][1]),
    ("offsetof(RgGeom, src)", GEOM_DTYPE.fields["src"][1]),
    ("offsetof(RgGeom, fill)", GEOM_DTYPE.fields["fill"][1]),
    ("offsetof(RgNorm, imean)", NORM_DTYPE.fields["imean"][1]),
)

GEOM_COPY, GEOM_PAD, GEOM_RESIZE, GEOM_WARP = 0, 1, 2, 3
RZ_COPY, RZ_NEAREST, RZ_LINEAR, RZ_LINEAR_AREA, RZ_CUBIC, RZ_LANCZOS4, RZ_AREA, RZ_AREA_FAST = range(8)
COL_BRIGHTNESS, COL_CONTRAST, COL_SATURATION, COL_HSL, COL_PCA, COL_INTENSITY, COL_FLOAT_INTENSITY = range(1, 8)
FINT_MODES = {"range": 0, "zscore": 1, "percentile": 2}
FINT_CLIP = 1
OUT_NONE, OUT_IMAGE, OUT_NORMALIZE = 0, 1, 2
OUT_DTYPE_CODES = {"float32": 0, "float16": 1, "uint8": 2, "int8": 3, "uint16": 4, "int16": 5}
SRC_DTYPE_CODES = {"uint8": 0, "uint16": 1, "int16": 2, "float32": 3}
KERNEL_SUFFIX = {"uint8": "u8", "uint16": "u16", "int16": "i16", "float32": "f32"}

# symbolic buffers: (kind, index, byte offset)
BUF_NONE, BUF_SRC, BUF_SCRATCH, BUF_OUT, BUF_MEAN = 0, 1, 2, 3, 4
_REF_FIELDS = ("geom_src", "dst", "norm_dst", "norm_mean")
SCRATCH_ALIGN = 256
DBL_EPSILON = 2.220446049250313e-16
F32 = np.float32


class PlanNotSupported(ValueError):
    """The plan cannot be packed for the kernels (it names the limit it hit)."""


# --- resize: which of cv::resize's algorithms runs ------------------------------------------------------
def resize_params(sw: int, sh: int, dw: int, dh: int, interp: int) -> dict:
    """``mode`` and scales of ``cv::resize`` from ``sw x sh`` to ``dw x dh`` (OpenCV's dispatch rules)."""
    if sw <= 0 or sh <= 0 or dw <= 0 or dh <= 0:
        raise PlanNotSupported(f"cannot resize {sw}x{sh} to {dw}x{dh}")
    inv_x, inv_y = dw / sw, dh / sh
    scale_x, scale_y = 1.0 / inv_x, 1.0 / inv_y
    out = dict(scale_x=scale_x, scale_y=scale_y, inv_scale_x=inv_x, inv_scale_y=inv_y, iscale_x=0, iscale_y=0)
    if (dw, dh) == (sw, sh):
        return dict(out, mode=RZ_COPY)
    if interp == 0:
        return dict(out, mode=RZ_NEAREST)
    ix, iy = round(scale_x), round(scale_y)  # saturate_cast<int>: round half to even, as Python's round
    area_fast = abs(scale_x - ix) < DBL_EPSILON and abs(scale_y - iy) < DBL_EPSILON
    if interp == 1 and area_fast and ix == 2 and iy == 2:
        interp = 3
    if interp == 3 and scale_x >= 1 and scale_y >= 1:
        if area_fast:
            return dict(out, mode=RZ_AREA_FAST, iscale_x=ix, iscale_y=iy)
        return dict(out, mode=RZ_AREA)
    modes = {1: RZ_LINEAR, 2: RZ_CUBIC, 3: RZ_LINEAR_AREA, 4: RZ_LANCZOS4}
    if interp not in modes:
        raise PlanNotSupported(f"unknown interpolation code {interp}")
    return dict(out, mode=modes[interp])


warp_inverse = invert_affine  # kept under its kernel-side name


def _round_half_away_f32(v: float) -> int:
    m = np.float32(v)
    return int(np.sign(m) * np.floor(np.abs(m) + np.float32(0.5)))


# --- per-sample compilation -------------------------------------------------------------------------------
@dataclass
class _View:
    """An image in some buffer (pixel (0, 0) at ``ref``) and the window of it the next op sees."""
    ref: tuple[int, int, int]
    stride: int            # elements per row
    x: int
    y: int
    w: int
    h: int


@dataclass
class _Step:
    fields: dict                                   # RgGeom values
    colour: list = field(default_factory=list)     # RgColour values, in stage order
    n_contrast: int = 0
    out_kind: int = OUT_IMAGE
    refs: dict = field(default_factory=dict)       # address field -> (buffer kind, index, byte offset)
    norm: dict | None = None                       # RgNorm values (the sample's output step)
    mean_image: MeanImage | None = None


class _SampleCompiler:
    def __init__(self, plan: SamplePlan, index: int, scratch: list[int], mode: str) -> None:
        self.plan = plan
        self.index = index
        self.scratch = scratch  # [next free byte]
        self.mode = mode
        h, w, c = plan.src_shape
        self.c = c
        self.dtype = np.dtype(plan.src_dtype)
        self.view = _View((BUF_SRC, index, 0), w * c, 0, 0, w, h)
        self.pending: _Step | None = None
        self.steps: list[_Step] = []

    # the window as an address + size
    def _window_ref(self) -> tuple[tuple[int, int, int], int]:
        v = self.view
        kind, idx, off = v.ref
        off += (v.y * v.stride + v.x * self.c) * self.dtype.itemsize
        return (kind, idx, off), v.stride

    def _new_step(self, kind: int, full_w: int, full_h: int, **extra) -> _Step:
        ref, stride = self._window_ref()
        f = dict(kind=kind, src_stride=stride, win_w=self.view.w, win_h=self.view.h, full_w=full_w,
                 full_h=full_h, crop_x=0, crop_y=0, out_w=full_w, out_h=full_h)
        f.update(extra)
        st = _Step(fields=f)
        st.refs["geom_src"] = ref
        return st

    def _materialise(self) -> None:
        st = self.pending
        if st is None:
            return
        w, h = st.fields["out_w"], st.fields["out_h"]
        size = w * h * self.c * self.dtype.itemsize
        off = self.scratch[0]
        self.scratch[0] = off + -(-size // SCRATCH_ALIGN) * SCRATCH_ALIGN
        st.out_kind = OUT_IMAGE
        st.refs["dst"] = (BUF_SCRATCH, 0, off)
        self.steps.append(st)
        self.pending = None
        self.view = _View((BUF_SCRATCH, 0, off), w * self.c, 0, 0, w, h)

    def _crop(self, x: int, y: int, w: int, h: int) -> None:
        st = self.pending
        if st is not None and not st.colour:
            f = st.fields
            if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > f["out_w"] or y + h > f["out_h"]:
                raise ValueError(f"crop ({x}, {y}, {w}x{h}) lies outside the {f['out_w']}x{f['out_h']} image")
            f["crop_x"] += x
            f["crop_y"] += y
            f["out_w"], f["out_h"] = w, h
            return
        self._materialise()
        v = self.view
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > v.w or y + h > v.h:
            raise ValueError(f"crop ({x}, {y}, {w}x{h}) lies outside the {v.w}x{v.h} image")
        self.view = _View(v.ref, v.stride, v.x + x, v.y + y, w, h)

    def _fill(self, fill: Sequence[float]) -> list[float]:
        f = [0.0 if self.mode == "mask" else float(v) for v in fill][:MAX_C]
        return f + [0.0] * (MAX_C - len(f))

    def _geometric(self, st) -> None:
        self._materialise()
        mask = self.mode == "mask"
        if isinstance(st, CropResize):
            self._crop(st.x, st.y, st.w, st.h)
        if isinstance(st, (Resize, CropResize)):
            interp = 0 if mask else st.interp
            rp = resize_params(self.view.w, self.view.h, st.out_w, st.out_h, interp)
            self.pending = self._new_step(GEOM_RESIZE, st.out_w, st.out_h, **rp)
        elif isinstance(st, Warp):
            interp = 0 if mask else st.interp
            if interp not in (0, 1, 2, 3, 4):
                raise PlanNotSupported(f"unknown interpolation code {interp}")
            self.pending = self._new_step(GEOM_WARP, st.out_w, st.out_h, m=warp_inverse(st.matrix),
                                          mode=interp, fill=self._fill(st.fill))
        else:  # Pad
            v = self.view
            self.pending = self._new_step(GEOM_PAD, v.w + 2 * st.pad, v.h + 2 * st.pad, pad=st.pad,
                                          fill=self._fill(st.fill))

    def _colour(self, st) -> None:
        stats = isinstance(st, Contrast) or (isinstance(st, FloatIntensity) and st.needs_statistics)
        p = self.pending
        if p is None or len(p.colour) >= MAX_COLOUR or (stats and p.n_contrast >= MAX_CONTRAST) or (
                isinstance(st, FloatIntensity) and st.needs_statistics
                and (p.fields["kind"] != GEOM_COPY or p.colour)):
            # (statistics passes re-evaluate every pixel: read them from memory, not through a resampling)
            self._materialise()
            v = self.view
            self.pending = self._new_step(GEOM_COPY, v.w, v.h)
        p = self.pending
        needs3 = not isinstance(st, (Brightness, Intensity, FloatIntensity))
        if needs3 and self.c != 3:
            raise ValueError(f"{type(st).__name__} needs a 3-channel image, got {self.c} channels")
        col = dict(kind=0, ival=0, slot=0, flags=0, a=0.0, b=0.0, v=(0.0, 0.0, 0.0), w=(0.0,) * 5)
        if isinstance(st, Brightness):
            col.update(kind=COL_BRIGHTNESS, a=st.alpha)
        elif isinstance(st, Contrast):
            col.update(kind=COL_CONTRAST, a=st.alpha, slot=p.n_contrast)
            p.n_contrast += 1
        elif isinstance(st, Saturation):
            col.update(kind=COL_SATURATION, a=st.alpha)
        elif isinstance(st, HSL):
            if self.dtype.name not in ("uint8", "uint16"):
                raise ValueError(f"HSL jitter needs uint8 or uint16 images, got {self.dtype.name}")
            col.update(kind=COL_HSL, ival=int(st.dh), b=st.ds, v=(st.dl, 0.0, 0.0))
        elif isinstance(st, PCANoise):
            col.update(kind=COL_PCA, v=tuple(st.add_bgr))
        elif isinstance(st, Intensity):
            col.update(kind=COL_INTENSITY, a=st.scale, b=st.offset)
        elif isinstance(st, FloatIntensity):
            k = st.constants()
            col.update(kind=COL_FLOAT_INTENSITY, ival=FINT_MODES[st.mode], flags=FINT_CLIP if st.clip else 0,
                       a=k.get("A", 0.0), b=k.get("D", 0.0), v=(k["E"], k["F"], k["lo"]),
                       w=(k["hi"], k["slope"], k["intercept"], F32(st.q_lo), F32(st.q_hi)))
            if st.needs_statistics:
                col.update(slot=p.n_contrast)
                p.n_contrast += 1
        p.colour.append(col)

    def _normalize(self, st: Normalize, out_shape, out_itemsize: int) -> None:
        if self.pending is None:
            v = self.view
            self.pending = self._new_step(GEOM_COPY, v.w, v.h)
        p = self.pending
        oc, oh, ow = out_shape
        if (p.fields["out_h"], p.fields["out_w"]) != (oh, ow):
            raise ValueError(f"the plan produced a {p.fields['out_w']}x{p.fields['out_h']} image for a "
                             f"{ow}x{oh} output")
        c = self.c
        if self.mode == "mask":
            od = self.dtype.name
            norm = dict(out_dtype=OUT_DTYPE_CODES[od], mirror=int(self.plan.mirror), swap=list(range(c)),
                        mean=[0.0] * c, mult=[1.0] * c, bias=[0.0] * c, imean=[0] * c)
            mean_img = None
        else:
            od = st.out_dtype
            raw = od in ("uint8", "uint16")
            mi = st.mean_image if not raw else None
            norm = dict(out_dtype=OUT_DTYPE_CODES[od], mirror=int(st.mirror), swap=list(st.swap),
                        mean=[float(F32(v)) for v in st.mean], mult=[float(F32(v)) for v in st.mult],
                        bias=[float(F32(v)) for v in st.bias],
                        imean=[_round_half_away_f32(v) for v in st.mean])
            mean_img = mi
        p.out_kind = OUT_NORMALIZE
        p.refs["norm_dst"] = (BUF_OUT, 0, self.index * oc * oh * ow * out_itemsize)
        p.norm = norm
        p.mean_image = mean_img
        self.steps.append(p)
        self.pending = None

    def compile(self, out_shape, out_itemsize: int) -> list[_Step]:
        stages = self.plan.stages
        if not stages or not isinstance(stages[-1], Normalize):
            raise ValueError("a SamplePlan must end with a Normalize stage")
        for st in stages[:-1]:
            if isinstance(st, Crop):
                self._crop(st.x, st.y, st.w, st.h)
            elif isinstance(st, (Resize, CropResize, Warp, Pad)):
                self._geometric(st)
            elif self.mode != "mask":
                self._colour(st)
        self._normalize(stages[-1], out_shape, out_itemsize)
        return self.steps


# --- batch program ----------------------------------------------------------------------------------------
@dataclass
class Launch:
    """One step position for the samples of one source dtype: ``n_contrast`` statistics passes (Contrast
    gray means, zscore / percentile statistics: one slot each), then the step."""
    src_dtype: str
    samples: np.ndarray          # batch index of each struct entry
    steps: np.ndarray            # (n,) STEP_DTYPE; addresses valid after BatchProgram.bind
    n_contrast: int
    max_w: int
    max_h: int
    refs: dict                   # field -> (kind, index, offset) int64 arrays

    @property
    def kernel_suffix(self) -> str:
        return KERNEL_SUFFIX[self.src_dtype]

    @property
    def dtype_code(self) -> int:
        return SRC_DTYPE_CODES[self.src_dtype]


@dataclass
class BatchProgram:
    out_shape: tuple[int, int, int, int]   # (N, C, H, W)
    out_dtype: str
    scratch_bytes: int
    launches: list[Launch]
    mean_images: list[MeanImage]

    def bind(self, src_addrs: Sequence[int], scratch_addr: int, out_addr: int,
             mean_addrs: Sequence[int] = ()) -> None:
        """Fill every struct's buffer addresses: source image i at ``src_addrs[i]`` (C-contiguous HWC),
        the scratch arena, the (N, C, H, W) output, and the float32 data of ``mean_images[j]``."""
        if len(mean_addrs) != len(self.mean_images):
            raise ValueError(f"{len(mean_addrs)} mean image addresses for {len(self.mean_images)} mean images")
        bases = {BUF_SRC: np.asarray(list(src_addrs), dtype=np.uint64).reshape(-1),
                 BUF_SCRATCH: np.array([scratch_addr], dtype=np.uint64),
                 BUF_OUT: np.array([out_addr], dtype=np.uint64),
                 BUF_MEAN: np.asarray(list(mean_addrs), dtype=np.uint64).reshape(-1)}
        targets = {"geom_src": ("geom", "src"), "dst": (None, "dst"), "norm_dst": ("norm", "dst"),
                   "norm_mean": ("norm", "mean_img")}
        for ln in self.launches:
            for name, (kind, idx, off) in ln.refs.items():
                addr = np.zeros(len(kind), dtype=np.uint64)
                for k, base in bases.items():
                    sel = kind == k
                    if sel.any():
                        addr[sel] = base[idx[sel]] + off[sel].astype(np.uint64)
                outer, inner = targets[name]
                if outer is None:
                    ln.steps[inner] = addr
                else:
                    ln.steps[outer][inner] = addr


def _fill_struct(rec: np.void, st: _Step, c: int) -> None:
    g = rec["geom"]
    for k, v in st.fields.items():
        g[k] = v
    rec["out_kind"] = st.out_kind
    rec["c"] = c
    rec["n_colour"] = len(st.colour)
    for i, col in enumerate(st.colour):
        dst = rec["colour"][i]
        for k, v in col.items():
            dst[k] = v
    if st.out_kind == OUT_NORMALIZE:
        n = rec["norm"]
        for k in ("swap", "mean", "mult", "bias", "imean"):
            vals = list(st.norm[k])
            n[k] = vals + [0] * (MAX_C - len(vals))
        n["out_dtype"] = st.norm["out_dtype"]
        n["mirror"] = st.norm["mirror"]


def compile_batch(plans: Sequence[SamplePlan], *, mode: str = "image",
                  mask_dtypes: Sequence[str] | None = None,
                  mask_channels: Sequence[int] | None = None) -> BatchProgram:
    """Pack ``plans`` (one output shape and dtype) into launches.

    ``mode="mask"`` replays only the geometric stages with nearest sampling and fill 0 on masks of
    ``mask_dtypes[i]`` with ``mask_channels[i]`` channels (default: the plan's) and writes their channels
    unchanged (mirrored with the image) in the mask's dtype.
    """
    if mode not in ("image", "mask"):
        raise ValueError(f"mode must be 'image' or 'mask', got {mode!r}")
    plans = list(plans)
    if not plans:
        raise ValueError("no plans to compile")
    oc, oh, ow = plans[0].out_shape
    if mode == "mask":
        dts = list(mask_dtypes) if mask_dtypes is not None else [p.src_dtype for p in plans]
        chans = list(mask_channels) if mask_channels is not None else [p.src_shape[2] for p in plans]
        out_dtype = dts[0]
        if any(d != out_dtype for d in dts) or any(ch != chans[0] for ch in chans):
            raise ValueError("masks of one batch must share dtype and channel count")
        if out_dtype not in SRC_DTYPE_CODES:
            raise PlanNotSupported(f"mask dtype {out_dtype!r}: expected one of {', '.join(SRC_DTYPE_CODES)}")
        oc = chans[0]
        plans = [SamplePlan((p.src_shape[0], p.src_shape[1], chans[0]), out_dtype, (oc, oh, ow), p.stages)
                 for p in plans]
    else:
        out_dtype = plans[0].out_dtype
    for p in plans:
        if tuple(p.out_shape[1:]) != (oh, ow) or (mode == "image" and (p.out_shape[0] != oc or
                                                                        p.out_dtype != out_dtype)):
            raise ValueError("all plans of a batch must have the same output shape and dtype")
        if p.src_dtype not in SRC_DTYPE_CODES:
            raise PlanNotSupported(f"source dtype {p.src_dtype!r}: expected one of {', '.join(SRC_DTYPE_CODES)}")
        if not 1 <= p.src_shape[2] <= MAX_C:
            raise PlanNotSupported(f"{p.src_shape[2]} channels: at most {MAX_C}")
        if mode == "image":
            check_output_dtype(p.src_dtype, p.out_dtype)
            check_float_intensity(p)
    out_itemsize = np.dtype(out_dtype).itemsize
    scratch = [0]
    per_sample = [_SampleCompiler(p, i, scratch, mode).compile((oc, oh, ow), out_itemsize)
                  for i, p in enumerate(plans)]

    mean_images: list[MeanImage] = []
    mean_index: dict[int, int] = {}
    launches: list[Launch] = []
    for src_dtype in SRC_DTYPE_CODES:
        members = [i for i, p in enumerate(plans) if p.src_dtype == src_dtype]
        if not members:
            continue
        depth = max(len(per_sample[i]) for i in members)
        for pos in range(depth):
            arr = np.zeros(len(members), dtype=STEP_DTYPE)
            refs = {name: (np.zeros(len(members), np.int64), np.zeros(len(members), np.int64),
                           np.zeros(len(members), np.int64)) for name in _REF_FIELDS}
            n_contrast = max_w = max_h = 0
            for j, i in enumerate(members):
                steps = per_sample[i]
                # align each sample's final step with the last launch
                k = pos - (depth - len(steps))
                if k < 0:
                    arr[j]["out_kind"] = OUT_NONE
                    continue
                st = steps[k]
                _fill_struct(arr[j], st, plans[i].src_shape[2])
                n_contrast = max(n_contrast, st.n_contrast)
                max_w = max(max_w, st.fields["out_w"])
                max_h = max(max_h, st.fields["out_h"])
                for name, ref in st.refs.items():
                    for a, v in zip(refs[name], ref):
                        a[j] = v
                mi = st.mean_image
                if mi is not None:
                    if id(mi) not in mean_index:
                        mean_index[id(mi)] = len(mean_images)
                        mean_images.append(mi)
                    refs["norm_mean"][0][j] = BUF_MEAN
                    refs["norm_mean"][1][j] = mean_index[id(mi)]
            launches.append(Launch(src_dtype, np.array(members), arr, n_contrast, max_w, max_h, refs))
    return BatchProgram((len(plans), oc, oh, ow), out_dtype, scratch[0], launches, mean_images)


__all__ = ["STEP_DTYPE", "GEOM_DTYPE", "COLOUR_DTYPE", "NORM_DTYPE", "LAYOUT", "BatchProgram", "Launch",
           "compile_batch", "resize_params", "warp_inverse", "PlanNotSupported", "SRC_DTYPE_CODES",
           "OUT_DTYPE_CODES", "KERNEL_SUFFIX"]
