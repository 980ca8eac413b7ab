"""The iterator-side .lst parser (ImageLabelMap) and MXNet's label priority rules (spec §3.5, §5)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import ORACLE
from recordgpu import recordio
from recordgpu.imageiter.labels import ImageLabelMap, LabelNotFoundError, select_label


def lm(text: bytes, label_width: int) -> ImageLabelMap:
    return ImageLabelMap.from_bytes(text, label_width, "test.lst")


def _headers(name: str) -> list[recordio.IRHeader]:
    reader = recordio.MXRecordIO(str(ORACLE / f"{name}.rec"), "r")
    out = []
    while (s := reader.read()) is not None:
        out.append(recordio.unpack(s)[0])
    reader.close()
    return out


def _first_epoch_labels(case: str) -> np.ndarray:
    z = np.load(ORACLE / "cases" / f"{case}.npz")
    out, b = [], 0
    while f"e0_b{b}_label" in z.files:
        lab, pad = z[f"e0_b{b}_label"], int(z[f"e0_b{b}_pad"])
        out.append(lab[: len(lab) - pad])
        b += 1
    return np.concatenate(out)


def _labels_for(name: str, label_width: int, label_map: ImageLabelMap | None) -> np.ndarray:
    rows = []
    for h in _headers(name):
        packed = h.label if h.flag > 0 else None
        scalar = 0.0 if h.flag > 0 else h.label
        rows.append(select_label(h.flag, scalar, packed, h.id, label_width, label_map))
    return np.stack(rows)


# --- agreement with MXNet's own batches ------------------------------------------------------------
def test_imglist_labels_match_mxnet_oracle():
    # imglist2 case: color8.rec (scalar labels i % 5) with color8_2labels.lst and label_width=2
    label_map = ImageLabelMap.from_file(ORACLE / "color8_2labels.lst", 2)
    got = _labels_for("color8", 2, label_map)
    np.testing.assert_array_equal(got, _first_epoch_labels("imglist2"))


def test_packed_labels_match_mxnet_oracle():
    got = _labels_for("multilabel", 3, None)
    np.testing.assert_array_equal(got, _first_epoch_labels("multilabel"))


def test_scalar_labels_match_mxnet_oracle():
    got = _labels_for("color8", 1, None)
    np.testing.assert_array_equal(got[:, 0], _first_epoch_labels("resize"))


# --- .lst parsing -----------------------------------------------------------------------------------
def test_label_width_beyond_the_labels_reads_the_path_as_zero():
    # spec §5 (verified p07): lw=3 on a 2-label list gives [100, 200, 0]; lw=4 fails
    text = b"5\t100\t200\timg0.png\n"
    np.testing.assert_array_equal(lm(text, 3).lookup(5), np.array([100, 200, 0], np.float32))
    with pytest.raises(ValueError, match="Bad ImageList format"):
        lm(text, 4)


def test_oracle_list_with_more_label_width_than_labels():
    m = ImageLabelMap.from_file(ORACLE / "color8_2labels.lst", 3)
    np.testing.assert_array_equal(m.lookup(4), np.array([40, 1, 0], np.float32))
    with pytest.raises(ValueError, match=r"Bad ImageList format \(.*color8_2labels\.lst, line 1"):
        ImageLabelMap.from_file(ORACLE / "color8_2labels.lst", 4)


def test_only_the_first_label_width_numbers_are_used():
    m = lm(b"0\t1.5\t2.5\t3.5\ta.jpg\n", 2)
    assert m.lookup(0).tolist() == [1.5, 2.5]


def test_any_whitespace_separates_and_line_ending_styles_agree():
    unix = lm(b"0 1.0  a.jpg\n1\t\t2.0\ta b.jpg\n", 1)
    dos = lm(b"0 1.0  a.jpg\r\n1\t\t2.0\ta b.jpg\r\n", 1)
    mac = lm(b"0 1.0  a.jpg\r1\t\t2.0\ta b.jpg", 1)
    for m in (unix, dos, mac):
        assert len(m) == 2 and m.lookup(0).tolist() == [1.0] and m.lookup(1).tolist() == [2.0]


def test_blank_lines_between_entries_are_skipped():
    m = lm(b"0\t1.0\ta\n\n\r\n\n1\t2.0\tb\n\n\n", 1)
    assert sorted(m.ids()) == [0, 1]


def test_leading_blank_line_or_blank_only_line_is_a_format_error():
    # dmlc's splitter attaches a run of breaks to the preceding line; at the start of the file, or on a
    # line of spaces, the record holds no labels (MXNet fails the same way)
    with pytest.raises(ValueError, match=r"Bad ImageList format \(test\.lst, line 1"):
        lm(b"\n0\t1.0\ta\n", 1)
    with pytest.raises(ValueError, match=r"Bad ImageList format \(test\.lst, line 2"):
        lm(b"0\t1.0\ta\n   \n1\t2.0\tb\n", 1)


def test_trailing_blanks_before_a_line_break_give_one_extra_zero_label():
    # "img \n": the break becomes NUL, a token of its own after the blank, which atof reads as 0
    assert lm(b"7 1 img \n8 2 3 4\n", 3).lookup(7).tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match=r"Bad ImageList format \(test\.lst, line 1"):
        lm(b"7 1 img \n8 2 3 4 5\n", 4)
    with pytest.raises(ValueError, match="Bad ImageList format"):  # at the end of the file: no NUL
        lm(b"7 1 img ", 3)


def test_duplicate_index_last_line_wins():
    m = lm(b"3\t1.0\ta\n3\t9.0\tb\n", 1)
    assert len(m) == 1 and m.lookup(3).tolist() == [9.0]


def test_c_atol_and_atof_semantics():
    m = lm(b"12abc 1.5kg x\n"            # atol "12abc" = 12, atof "1.5kg" = 1.5
           b"abc 2 x\n"                   # atol "abc" = 0
           b"-1 0x10 x\n"                 # (size_t)-1, hex float 16
           b"+4 -inf x\n"
           b"5 1e400 x\n"                 # overflows a double: HUGE_VAL
           b"6 1_000 x\n"                 # atof stops at '_' (Python's float would say 1000)
           b"7 .5e1 x\n"
           b"8 nan(7) x\n"
           b"99999999999999999999 3 x\n", 1)  # atol saturates at LONG_MAX
    assert m.lookup(12).tolist() == [1.5]
    assert m.lookup(0).tolist() == [2.0]
    assert m.lookup(2**64 - 1).tolist() == [16.0]
    assert m.lookup(4)[0] == -np.inf
    assert m.lookup(5)[0] == np.inf
    assert m.lookup(6).tolist() == [1.0]
    assert m.lookup(7).tolist() == [5.0]
    assert np.isnan(m.lookup(8)[0])
    assert m.lookup(2**63 - 1).tolist() == [3.0]


def test_labels_are_the_float_cast_of_a_double():
    m = lm(b"0 0.1 a\n1 16777217 a\n", 1)
    assert m.lookup(0)[0] == np.float32(0.1)
    assert m.lookup(1)[0] == np.float32(16777216.0)  # nearest float32 (ties to even)
    assert m.lookup(0).dtype == np.float32


def test_lookup_errors_and_copies():
    m = lm(b"0\t1.0\ta\n", 1)
    with pytest.raises(LabelNotFoundError, match="fail to find imagelabel for id 2") as exc:
        m.lookup(2)
    assert isinstance(exc.value, KeyError) and isinstance(exc.value, ValueError)
    assert str(exc.value).startswith("fail to find imagelabel for id 2")
    got = m.lookup(0)
    got[0] = 42
    assert m.lookup(0).tolist() == [1.0]
    assert m.lookup(np.uint64(0)).tolist() == [1.0]
    assert 0 in m and 2 not in m


def test_lookup_many():
    m = lm(b"0 1 2 a\n1 3 4 b\n", 2)
    np.testing.assert_array_equal(m.lookup_many([1, 0, 1]), np.array([[3, 4], [1, 2], [3, 4]], np.float32))
    with pytest.raises(LabelNotFoundError, match="id 5"):
        m.lookup_many([0, 5])


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="Cannot find any files that matches the URI pattern"):
        ImageLabelMap.from_file(tmp_path / "missing.lst", 1)
    empty = tmp_path / "empty.lst"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="Cannot find any files that matches the URI pattern"):
        ImageLabelMap.from_file(empty, 1)
    with pytest.raises(ValueError, match="value 0 for Parameter label_width should be greater equal to 1"):
        lm(b"0 1 a\n", 0)


# --- select_label priority ----------------------------------------------------------------------------
def test_imglist_overrides_packed_and_scalar_labels():
    m = lm(b"4\t7.0\t8.0\ta\n", 2)
    np.testing.assert_array_equal(select_label(3, 0.0, [1, 2, 3], 4, 2, m), [7.0, 8.0])
    np.testing.assert_array_equal(select_label(0, 5.0, None, 4, 2, m), [7.0, 8.0])
    with pytest.raises(LabelNotFoundError, match="fail to find imagelabel for id 9"):
        select_label(0, 5.0, None, 9, 2, m)


def test_packed_labels_need_label_width_equal_to_flag():
    out = select_label(2, 0.0, np.array([1.5, 2.5], np.float32), 0, 2, None)
    assert out.dtype == np.float32 and out.tolist() == [1.5, 2.5]
    for lw in (1, 3):
        with pytest.raises(ValueError, match=f"^rec file provide 2-dimensional label but label_width is set to {lw}$"):
            select_label(2, 0.0, [1.5, 2.5], 0, lw, None)
    with pytest.raises(ValueError, match="declares 3 packed labels but holds 2"):
        select_label(3, 0.0, [1.5, 2.5], 0, 3, None)


def test_scalar_label_needs_label_width_one():
    out = select_label(0, 3.0, None, 0, 1, None)
    assert out.dtype == np.float32 and out.shape == (1,) and out[0] == 3.0
    with pytest.raises(ValueError, match="^label_width must be 1 unless an imglist is provided or the rec file "
                                         "is packed with multi dimensional label$"):
        select_label(0, 3.0, None, 0, 2, None)
