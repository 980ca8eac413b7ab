"""recordgpu preview (contact sheets) and recordgpu.progress (terminal-only progress bars)."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from recordgpu import codecs, recordio
from recordgpu.preview import PreviewOptions, contact_sheet, main, record_window, to_display
from recordgpu.progress import Progress, progress, should_show
from recordgpu.torch import RecordDataset

from conftest import load_sources, oracle_path


def _write_rec(prefix, images, labels=None, ext=".png", meta=None) -> str:
    rec, idx = f"{prefix}.rec", f"{prefix}.idx"
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    for k, img in enumerate(images):
        buf = codecs.encode(img, ext)
        if meta is not None:
            from recordgpu.meta import attach_meta

            buf = attach_meta(buf, meta)
        label = labels[k] if labels is not None else float(k)
        w.write_idx(k, recordio.pack(recordio.IRHeader(0, label, k, 0), buf))
    w.close()
    return rec


# -- windowing --------------------------------------------------------------------------------------------
def test_16_bit_display_uses_the_percentile_window():
    ramp = np.linspace(0, 65535, 1000).astype(np.uint16).reshape(20, 50)
    lo, hi = np.percentile(ramp.astype(np.float32), [0.5, 99.5])
    shown, note = to_display(ramp)
    expect = np.clip((ramp.astype(np.float32) - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
    assert shown.shape == (20, 50, 3) and shown.dtype == np.uint8
    np.testing.assert_array_equal(shown[:, :, 0], expect)
    assert shown.min() == 0 and shown.max() == 255
    assert note.startswith("[") and note.endswith("]")


def test_8_bit_is_shown_as_is_and_gray_is_replicated():
    img = np.arange(60, dtype=np.uint8).reshape(6, 10)
    shown, note = to_display(img)
    assert note == ""
    for c in range(3):
        np.testing.assert_array_equal(shown[:, :, c], img)
    bgra = np.dstack([img, img + 1, img + 2, np.full_like(img, 9)])
    np.testing.assert_array_equal(to_display(bgra)[0], bgra[:, :, :3])


def test_constant_and_non_finite_images_do_not_break_the_window():
    shown, _ = to_display(np.full((4, 4), 1234, np.uint16))
    assert shown.dtype == np.uint8
    f = np.array([[np.nan, 0.0], [np.inf, 1.0]], np.float32)
    assert to_display(f)[0].dtype == np.uint8


def test_record_window_from_dicom_metadata():
    meta = {"WindowCenter": 40.0, "WindowWidth": 400.0, "RescaleSlope": 1.0, "RescaleIntercept": -1024.0}
    (lo, hi), invert, note = record_window(meta)
    # DICOM linear VOI: c - 0.5 -/+ (w - 1) / 2 in HU, then back to stored values: (HU - intercept) / slope
    assert (lo, hi) == (40 - 0.5 - 199.5 + 1024, 40 - 0.5 + 199.5 + 1024)
    assert not invert and "WC 40" in note
    (lo, hi), _, _ = record_window(meta, (-160.0, 240.0))  # an explicit window is in HU here
    assert (lo, hi) == (864.0, 1264.0)
    (lo, hi), _, _ = record_window({"WindowCenter": [100.0, 50.0], "WindowWidth": [20.0, 10.0],
                                    "RescaleSlope": 2.0, "RescaleIntercept": 0.0})
    assert (lo, hi) == ((100 - 0.5 - 9.5) / 2, (100 - 0.5 + 9.5) / 2)
    assert record_window({"PhotometricInterpretation": "MONOCHROME1"})[:2] == (None, True)
    assert record_window({}) == (None, False, "")
    assert record_window({"WindowCenter": "abc", "WindowWidth": 3})[0] is None


# -- contact sheets ------------------------------------------------------------------------------------------
def test_as_stored_tiles_show_the_decoded_pixels(tmp_path):
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (120, 90 + 10 * k, 3), dtype=np.uint8) for k in range(3)]
    rec = _write_rec(str(tmp_path / "c"), imgs)
    sheet = contact_sheet(rec, PreviewOptions(n=3, tile=120))
    assert (sheet.records, sheet.failed) == ([0, 1, 2], 0)
    for img, (x, y, w, h) in zip(imgs, sheet.boxes):
        np.testing.assert_array_equal(sheet.image[y:y + h, x:x + w], img)


def test_16_bit_tiles_use_the_metadata_window(tmp_path):
    img = (np.arange(120 * 120) % 4000 + 500).astype(np.uint16).reshape(120, 120)
    meta = {"WindowCenter": 1000.0, "WindowWidth": 1001.0, "RescaleSlope": 1.0, "RescaleIntercept": 0.0}
    rec = _write_rec(str(tmp_path / "ct"), [img], meta=meta)
    sheet = contact_sheet(rec, PreviewOptions(n=1, tile=120))
    x, y, w, h = sheet.boxes[0]
    shown = sheet.image[y:y + h, x:x + w]
    np.testing.assert_array_equal(shown, to_display(img, (499.5, 1499.5))[0])  # c - 0.5 -/+ (w - 1) / 2
    assert not np.array_equal(shown, to_display(img)[0])
    sheet2 = contact_sheet(rec, PreviewOptions(n=1, tile=120, window=(0.0, 4000.0)))
    x, y, w, h = sheet2.boxes[0]
    np.testing.assert_array_equal(sheet2.image[y:y + h, x:x + w], to_display(img, (0.0, 4000.0))[0])


def test_augmented_tiles_equal_the_dataset_sample(tmp_path):
    rec, idx = oracle_path("color8.rec"), oracle_path("color8.idx")
    kw = {"resize": "40", "rand_crop": "1", "rand_mirror": "1", "max_rotate_angle": "20", "data_shape": "3,30,30"}
    sheet = contact_sheet(rec, PreviewOptions(n=4, start=2, idx=idx, kw=kw, tile=120, seed=9))
    assert (sheet.records, sheet.failed) == ([2, 3, 4, 5], 0)
    ds = RecordDataset(rec, (3, 30, 30), path_imgidx=idx, dtype="uint8", seed=9, resize=40, rand_crop=True,
                       rand_mirror=True, max_rotate_angle=20)
    for i, (x, y, w, h) in zip(sheet.records, sheet.boxes):
        rgb = np.moveaxis(ds.sample(i, epoch=0).data, 0, 2)
        expect = np.repeat(np.repeat(rgb[:, :, ::-1], 4, axis=0), 4, axis=1)  # whole-pixel magnification
        np.testing.assert_array_equal(sheet.image[y:y + h, x:x + w], expect, err_msg=f"record {i}")


def test_normalisation_keywords_are_ignored(tmp_path):
    rec, idx = oracle_path("color8.rec"), oracle_path("color8.idx")
    base = {"resize": "40", "data_shape": "3,30,30"}
    a = contact_sheet(rec, PreviewOptions(n=2, idx=idx, kw=base, tile=120))
    b = contact_sheet(rec, PreviewOptions(n=2, idx=idx, kw={**base, "mean_r": "120", "std_r": "50",
                                                            "dtype": "float32", "batch_size": "8"}, tile=120))
    assert a.boxes == b.boxes
    for x, y, w, h in a.boxes:
        np.testing.assert_array_equal(a.image[y:y + h, x:x + w], b.image[y:y + h, x:x + w])


def test_masks_are_overlaid_where_non_zero(tmp_path):
    img = np.full((120, 120, 3), 100, np.uint8)
    mask = np.zeros((120, 120), np.uint8)
    mask[:, :60] = 1
    rec = _write_rec(str(tmp_path / "img"), [img])
    masks = _write_rec(str(tmp_path / "mask"), [mask])
    sheet = contact_sheet(rec, PreviewOptions(n=1, tile=120, masks=masks))
    x, y, w, h = sheet.boxes[0]
    tile = sheet.image[y:y + h, x:x + w]
    np.testing.assert_array_equal(tile[:, 60:], img[:, 60:])  # unmasked half untouched
    inner = tile[:, :59]
    assert (inner == inner[0, 0]).all() and not (inner[0, 0] == 100).all()  # one tint over the masked half
    assert not (tile[:, 59] == inner[0, 0]).all()  # the class boundary is outlined


def test_masks_follow_the_augmentation(tmp_path):
    """An image that equals its own mask (x 200) must still match it after a random rotation and crop."""
    mask = np.zeros((80, 80), np.uint8)
    mask[10:50, 20:70] = 1
    img = np.dstack([mask * 200] * 3).astype(np.uint8)
    rec = _write_rec(str(tmp_path / "img"), [img])
    masks = _write_rec(str(tmp_path / "mask"), [mask])
    kw = {"max_rotate_angle": "30", "rand_crop": "1", "data_shape": "3,60,60", "inter_method": "1"}
    sheet = contact_sheet(rec, PreviewOptions(n=1, tile=120, masks=masks, kw=kw))
    x, y, w, h = sheet.boxes[0]
    tile = sheet.image[y:y + h, x:x + w].astype(int)
    tinted = tile[:, :, 2] > tile[:, :, 0] + 30  # class 1 is red in the palette
    bright = tile.sum(axis=2) > 300  # the image's 200-valued square, tinted or not
    assert tinted.sum() > 500
    assert (tinted != bright).sum() < 0.05 * tinted.sum()  # they differ at most along the edges


def test_mask_errors(tmp_path):
    img = np.zeros((40, 40, 3), np.uint8)
    rec = _write_rec(str(tmp_path / "img"), [img, img])
    one = _write_rec(str(tmp_path / "one"), [np.zeros((40, 40), np.uint8)])
    with pytest.raises(ValueError, match="record by record"):
        contact_sheet(rec, PreviewOptions(n=2, masks=one))
    wrong = _write_rec(str(tmp_path / "wrong"), [np.zeros((40, 40), np.uint8), np.zeros((30, 40), np.uint8)])
    sheet = contact_sheet(rec, PreviewOptions(n=2, masks=wrong))
    assert sheet.failed == 1 and sheet.boxes[0] is not None and sheet.boxes[1] is None


def test_captions_show_the_records_labels():
    """Multi-label records show their packed labels without label_width; an imglist takes precedence."""
    rec, idx = oracle_path("multilabel.rec"), oracle_path("multilabel.idx")
    sheet = contact_sheet(rec, PreviewOptions(n=3, idx=idx))
    assert [c[:2] for c in sheet.captions] == [["#0  id 0", "label 0, 0, 0"], ["#1  id 1", "label 1, 0.5, -1"],
                                              ["#2  id 2", "label 2, 1, -2"]]  # multilabel.lst
    lst = oracle_path("color8_2labels.lst")
    sheet = contact_sheet(oracle_path("color8.rec"), PreviewOptions(
        n=3, idx=oracle_path("color8.idx"), kw={"path_imglist": lst, "label_width": "2"}))
    assert [c[1] for c in sheet.captions] == ["label 0, 0", "label 10, 1", "label 20, 2"]  # color8_2labels.lst
    sheet = contact_sheet(oracle_path("gray16.rec"), PreviewOptions(n=1))
    assert sheet.captions[0][2] == "uint16 " + "x".join(map(str, load_sources("gray16")[0].shape[::-1]))


# -- command line --------------------------------------------------------------------------------------------
def test_cli_writes_a_png(tmp_path, capsys):
    out = tmp_path / "grid.png"
    rc = main([oracle_path("color8.rec"), "--out", str(out), "--kw", "rand_crop=1", "--kw", "resize=40",
               "--n", "5", "--cols", "3", "--tile", "130", "--no-progress"])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    sheet = cv2.imread(str(out))
    assert sheet is not None and sheet.shape[1] == 3 * (130 + 6) + 6
    rc = main([oracle_path("gray16.rec"), "--out", str(tmp_path / "g.png"), "--random", "--n", "3", "--seed", "2"])
    assert rc == 0


@pytest.mark.parametrize("args,message", [
    (["--kw", "rezise=40"], "unknown ImageRecordIter keyword"),
    (["--start", "99"], "out of range"),
    (["--kw", "inter_method=7"], "inter_method"),
])
def test_cli_errors(tmp_path, capsys, args, message):
    rc = main([oracle_path("color8.rec"), "--out", str(tmp_path / "x.png")] + args)
    assert rc == 1
    assert message in capsys.readouterr().err


def test_cli_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as e:
        main([oracle_path("color8.rec"), "--out", str(tmp_path / "x.png"), "--kw", "no_equals_sign"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main([oracle_path("color8.rec"), "--out", str(tmp_path / "x.png"), "--window", "5,1"])


def test_cli_missing_file_and_bad_output(tmp_path, capsys):
    assert main([str(tmp_path / "none.rec"), "--out", str(tmp_path / "x.png")]) == 1
    assert main([oracle_path("color8.rec"), "--out", str(tmp_path / "x.unknownext")]) == 1
    assert "no writer for that extension" in capsys.readouterr().err
    assert main([oracle_path("color8.rec"), "--out", str(tmp_path / "no" / "x.png")]) == 1
    assert "no such folder" in capsys.readouterr().err


# -- progress ----------------------------------------------------------------------------------------------
class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_quiet_in_pipes_and_ci(monkeypatch):
    monkeypatch.delenv("RECORDGPU_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert should_show(_TTY()) and not should_show(io.StringIO()) and not should_show(None)
    monkeypatch.setenv("CI", "true")
    assert not should_show(_TTY())
    monkeypatch.setenv("RECORDGPU_PROGRESS", "1")
    assert should_show(io.StringIO())
    monkeypatch.setenv("RECORDGPU_PROGRESS", "0")
    monkeypatch.delenv("CI")
    assert not should_show(_TTY())
    pipe = io.StringIO()
    assert list(progress(range(5), label="x", stream=pipe)) == list(range(5))
    assert pipe.getvalue() == ""


def test_progress_draws_on_a_terminal():
    tty = _TTY()
    with Progress(4, "pack", unit="img", stream=tty, enabled=True, max_rate=0) as bar:
        for _ in range(4):
            bar.update()
    out = tty.getvalue()
    assert out.count("\r") >= 4 and out.endswith("\n")
    last = out.rstrip("\n").split("\r")[-1]
    assert last.startswith("pack [") and "100%" in last and "4/4" in last and "img/s" in last
    counter = Progress(None, stream=tty, enabled=False)
    counter.update(3)
    assert counter.count == 3 and "3 it" in counter.text()
