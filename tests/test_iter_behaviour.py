"""ImageRecordIter as a Python object: data API, reset, errors, skipping, threads, memory, dialects."""
import gc
import struct
import threading
import warnings

import numpy as np
import pytest

from conftest import ORACLE
from recordgpu import ImageRecordIter, RecordIOError, recordio
from recordgpu.recfile import RecordFile

COLOR8 = dict(path_imgrec=str(ORACLE / "color8.rec"), path_imgidx=str(ORACLE / "color8.idx"),
              data_shape=(3, 16, 16), batch_size=4)


def our_threads():
    return [t for t in threading.enumerate() if t.name.startswith("recordgpu")]


def collect(it):
    return [(np.array(b.data[0]), np.array(b.label[0]), b.pad, np.array(b.index)) for b in it]


def test_keyword_only_and_argument_errors():
    with pytest.raises(TypeError, match="keyword"):
        ImageRecordIter("x.rec")
    with pytest.raises(ValueError):
        ImageRecordIter(**{**COLOR8, "batch_size": 0})
    with pytest.warns(UserWarning, match="data_shpe"):
        ImageRecordIter(**COLOR8, data_shpe=(3, 8, 8)).close()
    with pytest.raises(FileNotFoundError, match="Cannot find any files"):
        ImageRecordIter(**{**COLOR8, "path_imgrec": str(ORACLE / "missing.rec"), "path_imgidx": ""})


def test_batches_are_numpy_with_asnumpy_and_dlpack_and_stay_valid():
    with ImageRecordIter(**COLOR8, prefetch_buffer=1) as it:
        first = it.next()
        snapshot = np.array(first.data[0])
        rest = [it.next() for _ in range(2)]
        assert isinstance(first.data[0], np.ndarray)
        assert np.array_equal(first.data[0].asnumpy(), snapshot)  # not overwritten by later batches
        assert np.from_dlpack(first.data[0]).__array_interface__["data"][0] == \
            first.data[0].__array_interface__["data"][0]
        assert all(b.data[0] is not first.data[0] for b in rest)
        assert first.pad == 0 and str(first) == "DataBatch: data shapes: [(4, 3, 16, 16)] label shapes: [(4,)]"


def test_iter_next_advances_and_getters_raise_after_end():
    with ImageRecordIter(**COLOR8) as it:
        n = 0
        while it.iter_next():
            assert it.getdata().shape == (4, 3, 16, 16)
            assert it.getlabel().shape == (4,)
            assert it.getindex().dtype == np.uint64
            n += 1
        assert n == 3 and it.getpad is not None
        with pytest.raises(RuntimeError):
            it.getdata()
        with pytest.raises(StopIteration):
            it.next()


def test_mid_epoch_reset_is_deterministic_whatever_the_prefetch_depth():
    kw = dict(COLOR8, shuffle=True, seed=5, rand_crop=True, rand_mirror=True, resize=20)
    results = []
    for depth in (1, 2, 8):
        with ImageRecordIter(**kw, prefetch_buffer=depth, preprocess_threads=2) as it:
            it.next()
            it.reset()  # mid-epoch: a clean restart (no wrap happened yet)
            results.append(collect(it))
            it.reset()
            results[-1] += collect(it)
    for other in results[1:]:
        assert len(other) == len(results[0])
        for a, b in zip(results[0], other):
            assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_mid_epoch_reset_restarts_the_pass():
    with ImageRecordIter(**COLOR8) as it:
        it.next()
        it.reset()
        assert [b.index.tolist() for b in it] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 0]]


def test_no_thread_left_behind():
    gc.collect()
    before = len(our_threads())
    it = ImageRecordIter(**COLOR8, preprocess_threads=3)
    for _ in it:
        pass
    it.close()
    assert len(our_threads()) == before
    it = ImageRecordIter(**COLOR8, preprocess_threads=3)
    for _ in it:
        break  # loop broken early, iterator dropped
    del it
    gc.collect()
    assert len(our_threads()) == before


def corrupt_image_rec(tmp_path, bad_ids=(5,)):
    rec, idx = tmp_path / "bad.rec", tmp_path / "bad.idx"
    src = recordio.MXIndexedRecordIO(str(ORACLE / "color8.idx"), str(ORACLE / "color8.rec"), "r")
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    for k in src.keys:
        payload = src.read_idx(k)
        if k in bad_ids:
            h, _ = recordio.unpack(payload)
            payload = recordio.pack(h, b"\xff\xd8\xff\xe0 this is not a jpeg at all")
        w.write_idx(k, payload)
    w.close()
    return rec, idx


def test_undecodable_record_raises_with_offset_and_id(tmp_path):
    rec, idx = corrupt_image_rec(tmp_path)
    offset = int(RecordFile(rec, idx).table.start[5])
    with pytest.raises(RecordIOError) as e:
        it = ImageRecordIter(path_imgrec=str(rec), path_imgidx=str(idx), data_shape=(3, 16, 16), batch_size=4)
        list(it)
    assert e.value.offset == offset and e.value.key == 5 and str(rec) in str(e.value)


def test_skip_mode_skips_counts_and_keeps_batches_full(tmp_path):
    rec, idx = corrupt_image_rec(tmp_path, bad_ids=(1, 5))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        it = ImageRecordIter(path_imgrec=str(rec), path_imgidx=str(idx), data_shape=(3, 16, 16), batch_size=4,
                             on_error="skip")
        batches = collect(it)
    ids = np.concatenate([b[3][: len(b[3]) - b[2]] for b in batches]).tolist()
    assert 1 not in ids and 5 not in ids and sorted(ids) == [0, 2, 3, 4, 6, 7, 8, 9, 10]
    assert all(b[0].shape == (4, 3, 16, 16) for b in batches)
    assert it.skipped == 2 and sum("skipping" in str(x.message) for x in w) == 2
    it.close()


def test_truncated_file_is_an_error_not_a_crash(tmp_path):
    rec = tmp_path / "t.rec"
    rec.write_bytes((ORACLE / "color8.rec").read_bytes()[:-8])
    with pytest.raises(RecordIOError, match="truncated"):
        ImageRecordIter(path_imgrec=str(rec), data_shape=(3, 16, 16), batch_size=4)


def test_label_errors_use_mxnet_text():
    with pytest.raises(ValueError, match="label_width must be 1 unless an imglist is provided"):
        ImageRecordIter(**COLOR8, label_width=2)
    with pytest.raises(ValueError, match="rec file provide 3-dimensional label but label_width is set to 1"):
        ImageRecordIter(path_imgrec=str(ORACLE / "multilabel.rec"), data_shape=(3, 16, 16), batch_size=3)


def test_insightface_rec_reads_images_only_with_identity_labels(tmp_path):
    import cv2

    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    key, ranges = 1, []
    for ident, count in enumerate([3, 2]):
        start = key
        for _ in range(count):
            img = np.full((20, 20, 3), 40 * key, np.uint8)
            w.write_idx(key, recordio.pack((0, [float(ident), 0.5], key, 0), cv2.imencode(".png", img)[1].tobytes()))
            key += 1
        ranges.append((start, key))
    first = key
    for r in ranges:
        w.write_idx(key, recordio.pack((0, list(r), key, 0), b""))
        key += 1
    w.write_idx(0, recordio.pack((0, [first, key], 0, 0), b""))
    w.close()
    with ImageRecordIter(path_imgrec=str(rec), path_imgidx=str(idx), data_shape=(3, 20, 20), batch_size=5,
                         dtype="uint8") as it:
        b = it.next()
        assert b.index.tolist() == [1, 2, 3, 4, 5]
        assert b.label[0].tolist() == [0, 0, 0, 1, 1]
        assert b.data[0][:, 0, 0, 0].tolist() == [40, 80, 120, 160, 200]
        with pytest.raises(StopIteration):
            it.next()


def test_16_bit_source_refuses_8_bit_output():
    with pytest.raises(ValueError, match="uint16"):
        ImageRecordIter(path_imgrec=str(ORACLE / "gray16.rec"), data_shape=(1, 16, 16), batch_size=2, dtype="uint8")


def test_missing_imglist_label_names_the_record_once(tmp_path):
    lst = tmp_path / "partial.lst"
    lst.write_text("0\t1.0\ta.jpg\n")
    with pytest.raises(ValueError) as e:
        ImageRecordIter(**COLOR8, path_imglist=str(lst))
    msg = str(e.value)
    assert msg.count("fail to find imagelabel for id 1") == 1 and "record id 1" in msg


def test_mid_epoch_reset_does_not_count_skips_twice(tmp_path):
    rec, idx = corrupt_image_rec(tmp_path, bad_ids=(1, 5))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        it = ImageRecordIter(path_imgrec=str(rec), path_imgidx=str(idx), data_shape=(3, 16, 16), batch_size=4,
                             on_error="skip", prefetch_buffer=1, round_batch=False)
        it.next()  # batch 0 skipped id 1; the producer runs ahead into batch 1, which skips id 5
        import time

        deadline = time.monotonic() + 10
        while it.skipped < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        before, warned = it.skipped, len(w)
        assert before == 2
        it.reset()  # replays batch 0 (which skips id 1 again) without counting or warning again
        list(it)
        assert it.skipped == before + 2  # only the new epoch's two encounters are added
        assert len(w) == warned + 2
        it.close()


def test_a_bad_header_in_the_next_batch_fails_that_batch_only(tmp_path):
    """Planning runs one batch ahead of decoding; a record whose header is unreadable must still fail the
    batch it belongs to, after the batches before it were delivered."""
    rec, idx = tmp_path / "hdr.rec", tmp_path / "hdr.idx"
    src = recordio.MXIndexedRecordIO(str(ORACLE / "color8.idx"), str(ORACLE / "color8.rec"), "r")
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    for k in src.keys:
        payload = src.read_idx(k)
        if k == 6:  # announces 1000 float32 labels that are not there
            payload = struct.pack("<IfQQ", 1000, 0.0, k, 0) + payload[24:64]
        w.write_idx(k, payload)
    w.close()
    offset = int(RecordFile(rec, idx).table.start[6])
    it = ImageRecordIter(path_imgrec=str(rec), path_imgidx=str(idx), data_shape=(3, 16, 16), batch_size=4,
                         preprocess_threads=2, prefetch_buffer=1)
    assert it.next().index.tolist() == [0, 1, 2, 3]
    with pytest.raises(RecordIOError, match="1000 float32 labels") as e:
        it.next()
    assert e.value.offset == offset
    it.close()


def test_the_next_batch_starts_early_but_fails_in_its_own_turn(tmp_path):
    """With on_error='raise' the workers start batch k+1 before batch k is collected; an undecodable image in
    batch k+1 must still be raised by the next() that returns batch k+1, never by the one before it."""
    rec, idx = corrupt_image_rec(tmp_path, bad_ids=(5,))
    it = ImageRecordIter(path_imgrec=str(rec), path_imgidx=str(idx), data_shape=(3, 16, 16), batch_size=4,
                         preprocess_threads=2, prefetch_buffer=1)
    assert it.next().index.tolist() == [0, 1, 2, 3]
    with pytest.raises(RecordIOError) as e:
        it.next()
    assert e.value.key == 5
    it.close()


def test_lookahead_only_where_it_cannot_change_the_batches(tmp_path):
    kw = dict(path_imgrec=str(ORACLE / "color8.rec"), path_imgidx=str(ORACLE / "color8.idx"),
              data_shape=(3, 16, 16), batch_size=3, prefetch_buffer=1)
    for on_error, expect in (("raise", True), ("skip", False)):
        it = ImageRecordIter(**kw, on_error=on_error)
        it.next()
        eng = it._engine
        it._stop_prefetch()  # look at the engine between batches
        assert (eng._ahead is not None) is expect, on_error
        it.reset()  # drops it; the next epoch is the same as a fresh iterator's
        assert eng._ahead is None
        fresh = ImageRecordIter(**kw, on_error=on_error)
        a, b = collect(it), collect(fresh)
        assert all(np.array_equal(x[0], y[0]) and x[2] == y[2] and np.array_equal(x[3], y[3]) for x, y in zip(a, b))
        assert len(a) == len(b)
        it.close()
        fresh.close()
