"""Checkpoint / resume of ImageRecordIter: ``state_dict()`` and ``load_state_dict()`` (recordgpu.imageiter.resume).

The contract: after ``load_state_dict(s)`` the iterator gives exactly the batches (data, label, pad, index)
that the iterator ``s`` was taken from would have given next — across epochs, ``reset()`` and
``round_batch`` wraps, with shuffle and random augmentation, whatever the prefetch depth, thread count or
path (CPU, host GPU) of either. The reference is always the same settings run without interruption.
"""
from __future__ import annotations

import dataclasses
import json
import pickle
import warnings

import cv2
import numpy as np
import pytest

from conftest import ORACLE
from recordgpu import ImageRecordIter, recordio
from recordgpu.augment.params import AugmentParams
from recordgpu.augment.plan import MeanImage
from recordgpu.augment.planner import Planner
from recordgpu.imageiter import resume
from recordgpu.imageiter.resume import iterator_state, load_iterator_state
from recordgpu.kernels.host import find_compiler
from recordgpu.rng import MT19937

COLOR8_IDX = dict(path_imgrec=str(ORACLE / "color8.rec"), path_imgidx=str(ORACLE / "color8.idx"))
COLOR8_NOIDX = dict(path_imgrec=str(ORACLE / "color8.rec"))  # byte reader: chunk buffers carry over wraps
RANDOM = dict(shuffle=True, seed=3, rand_crop=True, rand_mirror=True, resize=20)
CONFIGS = {
    "idx_shuffle_crop_mirror": dict(COLOR8_IDX, data_shape=(3, 16, 16), batch_size=4, **RANDOM),
    "noidx_shuffle_crop_mirror": dict(COLOR8_NOIDX, data_shape=(3, 16, 16), batch_size=4, **RANDOM),
    "noidx_resized_crop_colour_pca": dict(COLOR8_NOIDX, data_shape=(3, 16, 16), batch_size=3, shuffle=True,
                                          random_resized_crop=True, min_random_area=0.3, max_aspect_ratio=1.33,
                                          min_aspect_ratio=0.75, brightness=0.3, contrast=0.3, saturation=0.3,
                                          pca_noise=0.1, max_rotate_angle=20),
    "noidx_seed_aug": dict(COLOR8_NOIDX, data_shape=(3, 16, 16), batch_size=4, seed_aug=5, **RANDOM),
    "idx_no_round": dict(COLOR8_IDX, data_shape=(3, 16, 16), batch_size=3, round_batch=False, **RANDOM),
    # the unshuffled .idx reader carries a chunk-size overflow past the epoch's end into the next epoch
    "idx_unshuffled_no_round": dict(COLOR8_IDX, data_shape=(3, 16, 16), batch_size=3, round_batch=False,
                                    rand_crop=True, rand_mirror=True, resize=20),
    "noidx_part_1_of_2": dict(COLOR8_NOIDX, data_shape=(3, 16, 16), batch_size=2, num_parts=2, part_index=1,
                              **RANDOM),
}
# three epochs; more next() calls than batches, so states are also taken after StopIteration
OPS = (["next"] * 6 + ["reset"]) * 2 + ["next"] * 6
SAVER = dict(prefetch_buffer=1, preprocess_threads=1)
LOADER = dict(prefetch_buffer=4, preprocess_threads=2)


@pytest.fixture(autouse=True, scope="module")
def _checkpoint_methods():
    """The two ImageRecordIter methods delegate to resume.py; attach them here if the class lacks them."""
    if hasattr(ImageRecordIter, "state_dict"):
        yield
        return
    mp = pytest.MonkeyPatch()
    mp.setattr(ImageRecordIter, "state_dict", lambda self: iterator_state(self), raising=False)
    mp.setattr(ImageRecordIter, "load_state_dict", lambda self, s: load_iterator_state(self, s), raising=False)
    yield
    mp.undo()


def host(a) -> np.ndarray:
    return a.asnumpy() if hasattr(a, "asnumpy") else np.array(a)


def run_ops(it: ImageRecordIter, ops: list[str], states: list | None = None) -> list:
    """Apply ``ops``; returns one entry per op. ``states`` collects ``it.state_dict()`` before each op."""
    out = []
    for op in ops:
        if states is not None:
            states.append(it.state_dict())
        if op == "reset":
            it.reset()
            out.append("reset")
            continue
        try:
            b = it.next()
        except StopIteration:
            out.append("stop")
            continue
        out.append((host(b.data[0]), host(b.label[0]), b.pad, np.array(b.index)))
    if states is not None:
        states.append(it.state_dict())
    return out


def assert_same(got: list, want: list) -> None:
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        if isinstance(w, str) or isinstance(g, str):
            assert g == w, f"op {k}: {g!r} != {w!r}"
            continue
        assert g[2] == w[2], f"op {k}: pad"
        assert np.array_equal(g[3], w[3]), f"op {k}: index"
        assert np.array_equal(g[1], w[1]), f"op {k}: label"
        assert g[0].dtype == w[0].dtype and np.array_equal(g[0], w[0], equal_nan=True), f"op {k}: data"


def reference(kw: dict, ops: list[str] = OPS) -> list:
    with ImageRecordIter(**kw) as it:
        return run_ops(it, ops)


def through_json(state: dict) -> dict:
    return json.loads(json.dumps(state, allow_nan=False))


# -- the contract, at every point of a three-epoch run -----------------------------------------------------
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_resume_at_every_point_continues_with_the_uninterrupted_batches(name):
    kw = CONFIGS[name]
    want = reference(kw)
    assert want.count("stop") >= 3 and sum(not isinstance(x, str) for x in want) >= 6
    states: list = []
    with ImageRecordIter(**kw, **SAVER) as saver:
        assert_same(run_ops(saver, OPS, states), want)  # taking states does not disturb the run
    if name.startswith("noidx") and "part" not in name:
        # the byte reader parses records of the next epoch during a wrap: their plans travel in the state
        assert any(s["epoch_start"]["pending"] for s in states)
    for cut, state in enumerate(states):
        with ImageRecordIter(**kw, **LOADER) as it:
            it.load_state_dict(through_json(state))
            assert_same(run_ops(it, OPS[cut:]), want[cut:])


def test_a_running_iterator_can_go_back_to_an_earlier_state():
    kw = CONFIGS["noidx_shuffle_crop_mirror"]
    want = reference(kw)
    with ImageRecordIter(**kw) as it:
        run_ops(it, OPS[:9])  # into the second epoch
        state = it.state_dict()
        run_ops(it, OPS[9:17])  # into the third
        it.load_state_dict(state)
        assert_same(run_ops(it, OPS[9:]), want[9:])


def test_states_survive_pickle_and_hold_only_plain_json_values():
    kw = CONFIGS["noidx_resized_crop_colour_pca"]
    want = reference(kw)
    with ImageRecordIter(**kw) as it:
        run_ops(it, OPS[:9])
        state = it.state_dict()

    def walk(v):
        if isinstance(v, dict):
            assert all(isinstance(k, str) for k in v)
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        else:
            assert v is None or type(v) in (str, int, float, bool), type(v)

    walk(state)
    assert state["epoch_start"]["pending"]  # plans included
    json.dumps(state, allow_nan=False)
    with ImageRecordIter(**kw) as it:
        it.load_state_dict(pickle.loads(pickle.dumps(state)))
        assert_same(run_ops(it, OPS[9:]), want[9:])


def test_a_mean_image_is_referred_to_not_copied_into_the_state(tmp_path):
    mean = tmp_path / "mean.bin"
    kw = dict(COLOR8_NOIDX, data_shape=(3, 64, 64), batch_size=4, mean_img=str(mean), **RANDOM)
    states: list = []
    with ImageRecordIter(**kw) as it:  # computes and saves the mean image (drawing from the RNG, as MXNet)
        want = run_ops(it, OPS, states)
    assert mean.exists()
    state = states[9]
    assert state["epoch_start"]["pending"]
    # every pending plan's Normalize uses the mean image: a copy would be 3*64*64 floats per plan
    assert len(json.dumps(state)) < 3 * 64 * 64 * 4
    with ImageRecordIter(**kw) as it:  # loads the saved mean image
        it.load_state_dict(state)
        assert_same(run_ops(it, OPS[9:]), want[9:])


def _types(v):
    if isinstance(v, tuple):
        return tuple(_types(x) for x in v)
    if hasattr(v, "__dataclass_fields__"):
        return (type(v), tuple(_types(getattr(v, f)) for f in v.__dataclass_fields__))
    return type(v)


def test_plans_come_back_with_the_same_values_and_types():
    """Executors compute in the plan's numeric types (np.float32 vs float matters): decode(encode(p)) is p,
    and the mean image is the loading iterator's own object."""
    aug = AugmentParams(**dict(data_shape=(3, 24, 24), random_resized_crop=True, min_random_area=0.3,
                               max_rotate_angle=30, max_shear_ratio=0.1, pad=2, brightness=0.3, contrast=0.3,
                               saturation=0.3, pca_noise=0.1, random_h=10, random_s=10, random_l=10,
                               rand_mirror=True, mean_r=123.5, std_r=58.3, scale=0.5))
    mean = MeanImage(np.full((3, 24, 24), 100.25, np.float32))
    rng = MT19937(7)
    for k in range(20):
        plan = Planner(aug, mean if k % 2 else None).plan_sample(30 + k, 50 - k, 3, rng)
        other_mean = MeanImage(mean.data.copy())  # the loader's own (equal) mean image
        back = resume._decode(json.loads(json.dumps(resume._encode(plan))), other_mean)
        assert repr(back.stages[:-1]) == repr(plan.stages[:-1]) and _types(back) == _types(plan)
        assert back.normalize.mean_image is (other_mean if k % 2 else None)
        assert back == (dataclasses.replace(plan, stages=plan.stages[:-1] + (dataclasses.replace(
            plan.normalize, mean_image=other_mean),)) if k % 2 else plan)


# -- skipping unreadable records ---------------------------------------------------------------------------------
def bad_records_rec(tmp_path) -> str:
    """color8's images three times over (33 records, ids 0-32): record 2 unreadable when parsed (its header
    gives no size, so it is decoded then), record 29 only when decoded (a valid PNG header over corrupt
    pixel data) -- late enough that a fresh iterator's constructor has not met it yet."""
    rec = tmp_path / "bad.rec"
    src = recordio.MXIndexedRecordIO(str(ORACLE / "color8.idx"), str(ORACLE / "color8.rec"), "r")
    w = recordio.MXRecordIO(str(rec), "w")
    for k in range(33):
        h, img = recordio.unpack(src.read_idx(src.keys[k % 11]))
        h = h._replace(id=k)
        if k == 2:
            img = b"\xff\xd8\xff\xe0 this is not a jpeg at all"
        elif k == 29:
            png = bytearray(cv2.imencode(".png", np.full((30, 30, 3), 90, np.uint8) +
                                         np.arange(30, dtype=np.uint8)[:, None, None])[1].tobytes())
            at = png.find(b"IDAT") + 10
            png[at:at + 20] = bytes(b ^ 0x5A for b in png[at:at + 20])
            img = bytes(png)
        w.write(recordio.pack(h, img))
    w.close()
    return str(rec)


def test_resume_with_on_error_skip_gives_the_same_batches(tmp_path):
    kw = dict(path_imgrec=bad_records_rec(tmp_path), data_shape=(3, 16, 16), batch_size=4, on_error="skip",
              rand_crop=True, rand_mirror=True, resize=20)
    ops = (["next"] * 9 + ["reset"]) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = reference(kw, ops)
        ids = {int(i) for x in want if not isinstance(x, str) for i in x[3][: len(x[3]) - x[2]]}
        assert ids == set(range(33)) - {2, 29}
        states: list = []
        with ImageRecordIter(**kw, **SAVER) as it:
            run_ops(it, ops, states)
        for cut in range(len(states)):
            with ImageRecordIter(**kw, prefetch_buffer=1) as it:
                it.load_state_dict(through_json(states[cut]))
                assert_same(run_ops(it, ops[cut:]), want[cut:])


# -- the GPU path (host backend) ----------------------------------------------------------------------------------
needs_host_build = pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for the host build")


@needs_host_build
@pytest.mark.parametrize("name", ["noidx_shuffle_crop_mirror", "idx_no_round"])
def test_host_gpu_path_resumes_exactly(name):
    kw = dict(CONFIGS[name], _gpu_backend="host")
    want = reference(kw)
    states: list = []
    with ImageRecordIter(**kw, **SAVER) as it:
        assert it.device == "gpu"
        run_ops(it, OPS, states)
    for cut in range(0, len(states), 3):
        with ImageRecordIter(**kw, **LOADER) as it:
            it.load_state_dict(through_json(states[cut]))
            assert_same(run_ops(it, OPS[cut:]), want[cut:])


@needs_host_build
def test_a_cpu_state_continues_on_the_gpu_path():
    kw = CONFIGS["noidx_shuffle_crop_mirror"]
    want = reference(dict(kw, _gpu_backend="host"))
    with ImageRecordIter(**kw, device="cpu") as it:
        run_ops(it, OPS[:9])
        state = it.state_dict()
    with ImageRecordIter(**kw, _gpu_backend="host") as it:
        it.load_state_dict(state)
        assert_same(run_ops(it, OPS[9:]), want[9:])


# -- refusals ------------------------------------------------------------------------------------------------------
BASE = CONFIGS["noidx_shuffle_crop_mirror"]


def saved_state(kw: dict = BASE, ops: int = 9) -> dict:
    with ImageRecordIter(**kw) as it:
        run_ops(it, OPS[:ops])
        return it.state_dict()


def assert_refused_and_untouched(kw: dict, state, match: str, error=ValueError) -> None:
    """Loading ``state`` into an iterator built with ``kw`` (two batches in) raises; it then goes on as an
    untouched twin does."""
    want = reference(kw, OPS[:2] + OPS[2:12])[2:]
    with ImageRecordIter(**kw) as it:
        run_ops(it, OPS[:2])
        with pytest.raises(error, match=match):
            it.load_state_dict(state)
        assert_same(run_ops(it, OPS[2:12]), want)


@pytest.mark.parametrize("change", [
    dict(batch_size=3), dict(shuffle=False), dict(seed=4), dict(rand_crop=False), dict(resize=24),
    dict(dtype="uint8"), dict(num_parts=2, part_index=0), dict(round_batch=False), dict(seed_aug=1),
    dict(data_shape=(3, 16, 18)), dict(on_error="skip"),
], ids=lambda c: ",".join(c))
def test_a_state_from_other_settings_is_refused(change):
    name = next(iter(change))
    assert_refused_and_untouched(dict(BASE, **change), saved_state(), match=f"{name}=")


def test_a_state_from_other_data_is_refused(tmp_path):
    other = tmp_path / "other.rec"
    src = recordio.MXIndexedRecordIO(str(ORACLE / "color8.idx"), str(ORACLE / "color8.rec"), "r")
    payloads = [src.read_idx(k) for k in src.keys]
    w = recordio.MXRecordIO(str(other), "w")
    for p in payloads[:-1] + [payloads[-1] + b"\0" * 8]:  # the last image one JPEG-padding longer
        w.write(p)
    w.close()
    assert_refused_and_untouched(dict(BASE, path_imgrec=str(other)), saved_state(), match="other data")


def test_settings_that_do_not_change_batches_may_differ(tmp_path):
    copy = tmp_path / "moved.rec"
    copy.write_bytes((ORACLE / "color8.rec").read_bytes())
    want = reference(BASE)
    state = saved_state()
    with ImageRecordIter(**dict(BASE, path_imgrec=str(copy)), prefetch_buffer=7, preprocess_threads=3,
                         device="cpu", data_name="x", label_name="y") as it:
        it.load_state_dict(state)
        assert_same(run_ops(it, OPS[9:]), want[9:])


def test_malformed_states_are_refused_and_leave_the_iterator_untouched():
    good = saved_state()
    past_end = json.loads(json.dumps(good))
    past_end["position"]["consumed"] = 99  # found out only while replaying: the iterator must roll back
    foreign_plan = json.loads(json.dumps(good))
    entry = foreign_plan["epoch_start"]["pending"][0]
    entry["plan"] = {"dc": "os:system", "f": {}}
    other_id = json.loads(json.dumps(good))
    other_id["epoch_start"]["pending"][0]["id"] += 1000
    cases = [
        ([], "not an ImageRecordIter state"),
        ({**good, "format": "something else"}, "not an ImageRecordIter state"),
        ({**good, "version": 2}, "version 2"),
        ({k: v for k, v in good.items() if k != "position"}, "malformed"),
        (past_end, "past the end"),
        (foreign_plan, "unexpected plan type"),
        (other_id, "other data"),
    ]
    for state, match in cases:
        assert_refused_and_untouched(BASE, state, match)


def test_a_closed_iterator_refuses_to_load():
    state = saved_state()
    it = ImageRecordIter(**BASE)
    it.close()
    with pytest.raises(RuntimeError, match="closed"):
        it.load_state_dict(state)


def test_the_state_records_what_it_needs_and_no_pixels():
    state = saved_state(CONFIGS["idx_shuffle_crop_mirror"], ops=2)
    assert state["format"] == resume.STATE_FORMAT and state["version"] == resume.STATE_VERSION
    assert state["params"]["batch_size"] == 4 and state["params"]["shuffle"] is True
    assert "prefetch_buffer" not in state["params"] and "preprocess_threads" not in state["params"]
    assert state["data"]["records"] == 11 and state["data"]["indexed"] is True
    assert state["position"] == {"consumed": 2, "first_pending": False, "exhausted": False}
    # no pixels and no per-record lists: three MT19937 states (624 32-bit words each: the shuffle's, the one
    # that drew this epoch's permutation, the augmenter's) dominate
    assert len(json.dumps(state)) < 3 * 624 * 12 + 4096
