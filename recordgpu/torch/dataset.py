"""``RecordDataset``: a map-style dataset over a ``.rec`` for people who keep their own ``DataLoader``.

``dataset[i]`` decodes image record ``i`` at its stored depth and runs the same per-sample augmentation and
normalisation as ``ImageRecordIter`` (:class:`recordgpu.augment.planner.Planner` drawing from an MT19937,
executed by :func:`recordgpu.augment.cpu.execute`), and returns ``(data, label)``: ``data`` a ``(C, H, W)``
array of the output dtype, ``label`` a float32 scalar (``label_width == 1``) or a ``(label_width,)`` array,
labelled by the iterator's rules. torch's ``default_collate`` turns a list of them into the tensors
``ImageRecordIter`` batches hold. Nothing here imports torch.

Seeding. Sample ``i`` in epoch ``e`` draws its augmentation from ``MT19937(s)`` with
``s = SeedSequence([seed, e, i]).generate_state(1)[0]`` (numpy's documented, version-stable hash), so:

* each (seed, epoch, index) gets its own well-mixed seed (SeedSequence hashing), so samples, workers and
  epochs draw independent streams;
* the result depends only on (seed, epoch, index): not on ``num_workers``, on which worker loads which
  index, on the sampler order or on the batch size, so runs are reproducible with any loader setup;
* ``set_epoch(e)`` before each epoch gives new augmentations. The epoch lives in shared memory, so it
  reaches ``persistent_workers=True`` workers too (call it before ``iter(loader)``, i.e. before the
  ``for`` loop over the loader starts, since workers prefetch from then on).

For distributed training give every rank the same ``seed`` (the sampler splits the indices) or a
different one per rank; both are well defined.

Differences from the iterator: there is no batch-level RNG stream, so the numbers equal MXNet's only for
deterministic settings (random settings draw MXNet's distributions from the per-sample streams above);
``seed_aug`` is not accepted (use ``seed``); a missing ``mean_img`` file is an error (run the iterator
once to compute it, as MXNet does); an unreadable record raises a located :class:`RecordIOError`.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import codecs
from ..augment import cpu
from ..augment.params import AugmentParams
from ..augment.plan import SamplePlan
from ..augment.planner import Planner
from ..errors import DecodeError
from ..imageiter.params import known_parameters
from ..ndarray_file import load_mean_img
from ..rng import MT19937
from .records import RecordHeader, RecordReader

__all__ = ["RecordDataset", "Sample", "sample_seed"]

# ImageRecordIter options that a DataLoader (or the user's sampler) takes care of instead
_LOADER_OPTIONS = frozenset({
    "batch_size", "shuffle", "round_batch", "num_parts", "part_index", "preprocess_threads",
    "prefetch_buffer", "shuffle_chunk_size", "shuffle_chunk_seed", "ctx", "device", "device_id", "verbose",
    "aug_seq", "on_error", "data_name", "label_name",
})
_AUGMENT_FIELDS = frozenset(AugmentParams.field_names()) - {"data_shape", "seed_aug"}


@dataclass(frozen=True)
class Sample:
    """One processed record: the output ``data``, its ``label``, the record header and the plan that made it
    (the plan replays on a paired mask with ``recordgpu.augment.cpu.execute(plan, mask, out, mode="mask")``)."""

    data: np.ndarray
    label: np.ndarray
    header: RecordHeader
    plan: SamplePlan
    index: int
    epoch: int


class _SharedEpoch:
    """An int64 in shared memory: set in the main process, read by (persistent) worker processes.

    Shared when pickled to start a child process (fork, spawn, forkserver); an ordinary pickle (saving the
    dataset) carries the value only.
    """

    def __init__(self, value: int = 0) -> None:
        self._v = multiprocessing.RawValue("q", int(value))

    @property
    def value(self) -> int:
        return int(self._v.value)

    @value.setter
    def value(self, v: int) -> None:
        self._v.value = int(v)

    def __getstate__(self) -> dict:
        if multiprocessing.context.get_spawning_popen() is not None:
            return {"shared": self._v}
        return {"value": self.value}

    def __setstate__(self, state: dict) -> None:
        self._v = state["shared"] if "shared" in state else multiprocessing.RawValue("q", state["value"])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The MT19937 seed of sample ``index`` in ``epoch`` under base ``seed`` (module docstring)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint32)[0])


def _check_seed(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    return int(v)


class RecordDataset:
    """Map-style dataset: ``len(ds)`` image records, ``ds[i] -> (data, label)``.

    ``path_imgrec``, ``data_shape``, ``path_imgidx``, ``path_imglist``, ``label_width``, ``dtype`` and every
    augmentation / normalisation keyword (``resize``, ``rand_crop``, ``rand_mirror``, ``mean_r``, ...) mean
    what they mean for ``ImageRecordIter``. ``seed`` is the base of the per-sample seeds (module docstring).
    Iterator-only options (``batch_size``, ``shuffle``, ...) raise ``TypeError``: the DataLoader does that.
    """

    def __init__(self, path_imgrec: str | os.PathLike, data_shape: Any, *,
                 path_imgidx: str | os.PathLike | None = None, path_imglist: str | os.PathLike | None = None,
                 label_width: int = 1, seed: int = 0, **kwargs: Any) -> None:
        loader_opts = sorted(k for k in kwargs if k in _LOADER_OPTIONS)
        if loader_opts:
            raise TypeError(f"RecordDataset does not take {', '.join(loader_opts)}: batching, shuffling and "
                            "workers are the DataLoader's job (pass seed= for the augmentation seed)")
        if "seed_aug" in kwargs:
            raise TypeError("RecordDataset does not take seed_aug (the iterator's per-chunk reseeding); "
                            "every sample is seeded from (seed, epoch, index): pass seed=")
        unknown = sorted(k for k in kwargs if k not in _AUGMENT_FIELDS)
        if unknown:
            hint = " (an ImageRecordIter option without meaning here)" if set(unknown) <= set(known_parameters()) \
                else ""
            raise TypeError(f"RecordDataset got unexpected keyword argument(s) {', '.join(unknown)}{hint}")
        self.seed = _check_seed("seed", seed)
        self.params = AugmentParams(data_shape=data_shape, **kwargs)
        mean_image = None
        if self.params.mean_img and not self.params.raw_output:
            if not os.path.exists(self.params.mean_img):
                raise FileNotFoundError(f"mean_img {self.params.mean_img!r} does not exist; RecordDataset only "
                                        "loads mean images (ImageRecordIter computes and saves a missing one)")
            mean_image = load_mean_img(self.params.mean_img)
        self.planner = Planner(self.params, mean_image)
        self.reader = RecordReader(path_imgrec, path_imgidx, path_imglist=path_imglist, label_width=label_width)
        self.out_dtype = np.dtype(self.params.dtype)
        self._epoch = _SharedEpoch(0)

    # -- epochs and seeds ------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch whose augmentations ``ds[i]`` draws (see :meth:`set_epoch`)."""
        return self._epoch.value

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentations of ``epoch`` from now on, in this process and in its DataLoader workers."""
        self._epoch.value = _check_seed("epoch", epoch)

    def sample_seed(self, index: int, epoch: int | None = None) -> int:
        """The MT19937 seed of sample ``index`` in ``epoch`` (default: the current epoch)."""
        e = self.epoch if epoch is None else _check_seed("epoch", epoch)
        return sample_seed(self.seed, e, self.reader.check_index(index))

    # -- access ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | np.float32]:
        s = self.sample(index)
        return s.data, (s.label[0] if self.reader.label_width == 1 else s.label)

    def decode(self, index: int) -> tuple[RecordHeader, np.ndarray, np.ndarray]:
        """``(header, label, image)``: record ``index`` decoded for ``data_shape[0]`` channels, ``(H, W, C)``
        BGR(A) at its stored depth, before any augmentation."""
        hdr, label, buf = self.reader.read(index)
        try:
            image = codecs.decode_image(buf, self.params.channels)
        except DecodeError as e:
            err = self.reader.error(index, f"record id {hdr.image_id}: {e}")
            err.key = hdr.image_id
            raise err from None
        return hdr, label, image

    def sample(self, index: int, *, epoch: int | None = None) -> Sample:
        """Record ``index`` decoded, augmented and normalised, with its label, header and plan."""
        e = self.epoch if epoch is None else _check_seed("epoch", epoch)
        i = self.reader.check_index(index)
        hdr, label, image = self.decode(i)
        plan, out = self.augment(i, image, epoch=e, header=hdr)
        return Sample(out, label, hdr, plan, i, e)

    def augment(self, index: int, image: np.ndarray, *, epoch: int | None = None,
                header: RecordHeader | None = None) -> tuple[SamplePlan, np.ndarray]:
        """Plan and run sample ``index``'s augmentation on its decoded ``(H, W, C)`` ``image``:
        ``(plan, data)``. Errors name the record."""
        e = self.epoch if epoch is None else _check_seed("epoch", epoch)
        i = self.reader.check_index(index)
        rng = MT19937(sample_seed(self.seed, e, i))
        try:
            plan = self.planner.plan_sample(image.shape[0], image.shape[1], image.shape[2], rng,
                                            src_dtype=image.dtype)
            out = np.empty(plan.out_shape, self.out_dtype)
            cpu.execute(plan, image, out)
        except ValueError as err:
            hdr = header or self.reader.header(i)
            where = self.reader.error(i, "").args[0].rstrip(": ")
            raise ValueError(f"{err} (record id {hdr.image_id}, {where})") from None
        return plan, out

    def close(self) -> None:
        """Release the file maps."""
        self.reader.close()
