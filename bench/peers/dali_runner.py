"""Runner: NVIDIA DALI's pipeline on a ``.rec`` (executed by the harness in ``bench/.venv-dali``).

``readers.mxnet`` -> ``decoders.image`` -> resize / crop_mirror_normalize. CPU bench: ``device='cpu'``
decoders with ``device_id=None``, so that no CUDA context is needed (spec gpu-decode.md §3). GPU bench
(``device: gpu`` in the config): ``device='mixed'`` decoders on GPU 0 (nvJPEG; the operators after them run
on the GPU), outputs kept on the device, which is synchronised after each batch (CuPy reads them through
``__cuda_array_interface__``). Per setting (``setting`` in the config, see ``bench/iterators.py``):

* eval: decode RGB, ``resize(resize_shorter=S)``, centre ``crop_mirror_normalize`` to HxW, float32 CHW;
* train: ``decoders.image_random_crop`` (DALI's ROI-decoding random-resized-crop, what a DALI user
  writes), ``resize`` to HxW, ``crop_mirror_normalize`` with a random mirror;
* gray16: decode with ``dtype=UINT16, output_type=ANY_DATA`` (full depth), ``crop_mirror_normalize``
  (on the GPU after a cast to float: DALI's GPU operators take no uint16 there).

Resizes use linear interpolation without antialiasing, as MXNet's ImageRecordIter does.
"""
from __future__ import annotations

import math
import time

import numpy as np

import runner_common as rc


def build(cfg: dict):
    from nvidia.dali import fn, pipeline_def, types

    st = cfg["setting"]
    _, h, w = st["data_shape"]
    mean, std = st["mean"], st["std"]
    on_gpu = cfg.get("device") == "gpu"
    dec = "mixed" if on_gpu else "cpu"

    @pipeline_def(batch_size=int(cfg["batch_size"]), num_threads=int(cfg["threads"]),
                  device_id=0 if on_gpu else None,
                  seed=int(cfg.get("seed", 0)), prefetch_queue_depth=2)
    def pipe():
        raw, label = fn.readers.mxnet(path=[cfg["rec"]], index_path=[cfg["idx"]],
                                      random_shuffle=bool(st.get("shuffle")), name="Reader")
        if st["kind"] == "gray16":
            img = fn.decoders.image(raw, device=dec, dtype=types.UINT16, output_type=types.ANY_DATA)
            if on_gpu:
                img = fn.cast(img, dtype=types.FLOAT)
            out = fn.crop_mirror_normalize(img, dtype=types.FLOAT, output_layout="CHW", crop=(h, w),
                                           mean=mean, std=std)
        elif st.get("random_resized_crop"):
            rrc = st["random_resized_crop"]
            img = fn.decoders.image_random_crop(raw, device=dec, output_type=types.RGB,
                                                random_area=rrc["area"], random_aspect_ratio=rrc["aspect"],
                                                num_attempts=10)
            img = fn.resize(img, resize_x=w, resize_y=h, interp_type=types.INTERP_LINEAR, antialias=False)
            mirror = fn.random.coin_flip() if st.get("rand_mirror") else 0
            out = fn.crop_mirror_normalize(img, dtype=types.FLOAT, output_layout="CHW", crop=(h, w),
                                           mean=mean, std=std, mirror=mirror)
        else:
            img = fn.decoders.image(raw, device=dec, output_type=types.RGB)
            img = fn.resize(img, resize_shorter=float(st["resize"]), interp_type=types.INTERP_LINEAR,
                            antialias=False)
            out = fn.crop_mirror_normalize(img, dtype=types.FLOAT, output_layout="CHW", crop=(h, w),
                                           mean=mean, std=std)
        return out, label

    return pipe()


def main() -> None:
    cfg = rc.load_config()
    try:
        import nvidia.dali as dali
    except ImportError as e:
        rc.skip(f"DALI not importable: {e}")
    on_gpu = cfg.get("device") == "gpu"
    cupy = gpu_name = None
    if on_gpu:
        import gpu_common

        cupy, gpu_name = gpu_common.require_gpu()
    sampler = rc.RssSampler(cfg.get("rss_interval_s", 0.01))
    bs = int(cfg["batch_size"])
    t0 = time.perf_counter()
    p = build(cfg)
    p.build()
    n = int(p.reader_meta("Reader")["epoch_size"])

    def epoch(e: int):
        # DALI's stream has no epoch boundary: ceil(n / bs) batches make an epoch, the last one topped
        # up with the next epoch's samples (decoded all the same, so every delivered image counts).
        for _ in range(math.ceil(n / bs)):
            out, _label = p.run()
            if on_gpu:
                arr = cupy.asarray(out.as_tensor())  # zero-copy view of DALI's device buffer
                gpu_common.finish(cupy, arr)
            else:
                arr = np.asarray(out.as_tensor())  # zero-copy view, valid until the next run()
                rc.checksum(arr)
            yield arr.shape[0], arr

    res = rc.run_epochs(int(cfg["epochs"]), epoch, t0, sampler)
    res["rss"] = sampler.stop()
    res["version"] = f"DALI {dali.__version__}"
    if on_gpu:
        res["gpu"] = gpu_name
    rc.emit(res)


if __name__ == "__main__":
    main()
