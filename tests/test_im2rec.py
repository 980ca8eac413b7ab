"""im2rec: list making and packing compared with MXNet 1.9.1 (spec mxnet-1.9.1.md §2, §1.4) and recordgpu's
extensions (full depth, .npy/.tiff payloads, threads, error handling, atomic outputs)."""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from recordgpu import codecs, im2rec, recordio
from recordgpu.framing import encode_record
from recordgpu.im2rec import Im2RecError, PackOptions, main, make_list, pack_list, read_list

ORACLE = Path(__file__).parent / "data" / "oracle"
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- helpers

def write_image(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npy":
        np.save(path, img)
    else:
        ok, buf = cv2.imencode(path.suffix.lower(), img)
        assert ok
        path.write_bytes(buf.tobytes())
    return path


def tiny(seed: int, shape=(6, 9, 3), dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)


def write_lst(path: Path, rows) -> Path:
    """rows: (index, [labels], relpath)"""
    path.write_text("".join("%d\t" % i + "".join("%f\t" % x for x in labels) + "%s\n" % p
                            for i, labels, p in rows))
    return path


def read_records(prefix: Path):
    """[(idx key, IRHeader, image bytes)] in file order, via the .idx."""
    r = recordio.MXIndexedRecordIO(str(prefix) + ".idx", str(prefix) + ".rec", "r")
    try:
        out = []
        for k in r.keys:
            h, s = recordio.unpack(r.read_idx(k))
            out.append((k, h, bytes(s)))
        return out
    finally:
        r.close()


def lst_lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


RECURSIVE_FILES = ["top0.jpg", "top1.png", "cat/c1.jpg", "cat/c2.PNG", "cat/c3.jpeg", "cat/notes.txt",
                   "dog/d1.png", "dog/d2.jpg", "dog/puppy/p1.png"]


@pytest.fixture
def spec_tree(tmp_path) -> Path:
    """The recursive example of spec §2.2."""
    root = tmp_path / "root"
    for i, rel in enumerate(RECURSIVE_FILES):
        p = root / rel
        if p.suffix == ".txt":
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("not an image")
        else:
            write_image(p, tiny(i))
    return root


# ------------------------------------------------------------------------------------ list mode: spec §2.2

# Traversal order of the spec example: the root first, then sorted subdirectories depth-first, sorted files.
SPEC_ORDER = [("top0.jpg", 0), ("top1.png", 0), ("cat/c1.jpg", 1), ("cat/c2.PNG", 1), ("cat/c3.jpeg", 1),
              ("dog/d1.png", 2), ("dog/d2.jpg", 2), ("dog/puppy/p1.png", 3)]


def test_recursive_example_labels_indices_and_report(spec_tree, tmp_path, capsys):
    written = make_list(str(tmp_path / "data"), str(spec_tree), recursive=True, shuffle=False)
    assert written == [str(tmp_path / "data.lst")]
    assert capsys.readouterr().out == ". 0\ncat 1\ndog 2\ndog/puppy 3\n"
    expected = ["%d\t%d.000000\t%s\n" % (i, label, rel) for i, (rel, label) in enumerate(SPEC_ORDER)]
    assert lst_lines(tmp_path / "data.lst") == expected
    assert expected[3] == "3\t1.000000\tcat/c2.PNG\n"  # the spec's literal line


def test_recursive_example_shuffled_index_order(spec_tree, tmp_path):
    make_list(str(tmp_path / "data"), str(spec_tree), recursive=True)
    lines = lst_lines(tmp_path / "data.lst")
    assert [int(x.split("\t")[0]) for x in lines] == [0, 4, 7, 5, 1, 6, 3, 2]
    by_index = {i: "%d\t%d.000000\t%s\n" % (i, label, rel) for i, (rel, label) in enumerate(SPEC_ORDER)}
    assert sorted(lines) == sorted(by_index.values())
    assert lines == [by_index[i] for i in [0, 4, 7, 5, 1, 6, 3, 2]]


def test_make_list_leaves_global_random_state_alone(spec_tree, tmp_path):
    state = random.getstate()
    make_list(str(tmp_path / "data"), str(spec_tree), recursive=True)
    assert random.getstate() == state


def test_cli_list_mode_writes_same_bytes_and_prints_labels(spec_tree, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "root", "--list", "--recursive"]) == 0
    assert capsys.readouterr().out == ". 0\ncat 1\ndog 2\ndog/puppy 3\n"
    cli_bytes = (tmp_path / "data.lst").read_bytes()
    make_list(str(tmp_path / "api"), str(spec_tree), recursive=True)
    assert cli_bytes == (tmp_path / "api.lst").read_bytes()


def test_non_recursive_lists_root_files_with_label_zero(spec_tree, tmp_path, capsys):
    make_list(str(tmp_path / "flat"), str(spec_tree), shuffle=False)
    assert capsys.readouterr().out == ""  # only the recursive walk reports labels
    assert lst_lines(tmp_path / "flat.lst") == ["0\t0.000000\ttop0.jpg\n", "1\t0.000000\ttop1.png\n"]


def test_exts_compare_lower_cased_suffix(spec_tree, tmp_path):
    # ".PNG" as an ext never matches (suffixes are lower-cased first); file c2.PNG is matched by ".png".
    make_list(str(tmp_path / "up"), str(spec_tree / "cat"), exts=[".PNG"], shuffle=False)
    assert (tmp_path / "up.lst").read_text() == ""
    make_list(str(tmp_path / "low"), str(spec_tree / "cat"), exts=[".png", ".txt"], shuffle=False)
    assert lst_lines(tmp_path / "low.lst") == ["0\t0.000000\tc2.PNG\n", "1\t0.000000\tnotes.txt\n"]


def test_default_exts_are_mxnets():
    args = im2rec.build_parser().parse_args(["p", "r"])
    assert args.exts == [".jpeg", ".jpg", ".png"]
    assert (args.chunks, args.train_ratio, args.test_ratio, args.quality, args.num_thread, args.color,
            args.encoding, args.resize) == (1, 1.0, 0, 95, 1, 1, ".jpg", 0)
    assert args.shuffle and not (args.list or args.recursive or args.pass_through or args.center_crop
                                 or args.pack_label or args.skip_errors)


@pytest.fixture
def eight_flat(tmp_path) -> Path:
    root = tmp_path / "eight"
    for i in range(8):
        write_image(root / f"im{i}.png", tiny(i, (2, 2)))
    return root


def test_chunk_and_ratio_example(eight_flat, tmp_path):
    written = make_list(str(tmp_path / "s"), str(eight_flat), shuffle=False, train_ratio=0.5, test_ratio=0.25)
    assert written == [str(tmp_path / f"s_{n}.lst") for n in ("test", "val", "train")]

    def ids(n):
        return [int(x.split("\t")[0]) for x in lst_lines(tmp_path / f"s_{n}.lst")]

    assert ids("test") == [0, 1]
    assert ids("train") == [2, 3, 4, 5]
    assert ids("val") == [6, 7]
    assert not (tmp_path / "s.lst").exists()


def test_split_files_written_only_when_asked(eight_flat, tmp_path):
    # train 1.0: only <prefix>.lst; test 0: no _test; train + test == 1: no _val.
    assert make_list(str(tmp_path / "a"), str(eight_flat)) == [str(tmp_path / "a.lst")]
    assert make_list(str(tmp_path / "b"), str(eight_flat), train_ratio=0.5) == [
        str(tmp_path / "b_val.lst"), str(tmp_path / "b_train.lst")]
    assert make_list(str(tmp_path / "c"), str(eight_flat), train_ratio=0.75, test_ratio=0.25) == [
        str(tmp_path / "c_test.lst"), str(tmp_path / "c_train.lst")]


def test_chunks_name_files_and_split_with_chunk_size(eight_flat, tmp_path):
    (eight_flat / "im7.png").unlink()  # 7 items, 3 chunks: chunk_size 3, the last chunk holds one item
    written = make_list(str(tmp_path / "k"), str(eight_flat), shuffle=False, chunks=3, train_ratio=0.5)
    assert [os.path.basename(p) for p in written] == [
        "k_0_val.lst", "k_0_train.lst", "k_1_val.lst", "k_1_train.lst", "k_2_val.lst", "k_2_train.lst"]

    def ids(n):
        return [int(x.split("\t")[0]) for x in lst_lines(tmp_path / f"k_{n}.lst")]

    # sep = int(chunk_size * 0.5) = 1 even for the short last chunk
    assert [ids("0_train"), ids("0_val"), ids("1_train"), ids("1_val"), ids("2_train"), ids("2_val")] == [
        [0], [1, 2], [3], [4, 5], [6], []]


def test_chunks_below_one_is_an_error(eight_flat, tmp_path, capsys):
    with pytest.raises(ValueError, match="chunks"):
        make_list(str(tmp_path / "z"), str(eight_flat), chunks=0)
    assert main([str(tmp_path / "z"), str(eight_flat), "--list", "--chunks", "0"]) == 2
    assert "--chunks" in capsys.readouterr().err


# MXNet 1.9.1 tools/im2rec.py list functions, verbatim (Apache License 2.0, (c) The Apache Software
# Foundation; https://github.com/apache/mxnet/blob/1.9.1/tools/im2rec.py), used as an oracle only.
# Docstrings removed.
def _mx_list_image(root, recursive, exts):
    i = 0
    if recursive:
        cat = {}
        for path, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()
            files.sort()
            for fname in files:
                fpath = os.path.join(path, fname)
                suffix = os.path.splitext(fname)[1].lower()
                if os.path.isfile(fpath) and (suffix in exts):
                    if path not in cat:
                        cat[path] = len(cat)
                    yield (i, os.path.relpath(fpath, root), cat[path])
                    i += 1
        for k, v in sorted(cat.items(), key=lambda x: x[1]):
            print(os.path.relpath(k, root), v)
    else:
        for fname in sorted(os.listdir(root)):
            fpath = os.path.join(root, fname)
            suffix = os.path.splitext(fname)[1].lower()
            if os.path.isfile(fpath) and (suffix in exts):
                yield (i, os.path.relpath(fpath, root), 0)
                i += 1


def _mx_write_list(path_out, image_list):
    with open(path_out, 'w') as fout:
        for i, item in enumerate(image_list):
            line = '%d\t' % item[0]
            for j in item[2:]:
                line += '%f\t' % j
            line += '%s\n' % item[1]
            fout.write(line)


def _mx_make_list(args):
    image_list = _mx_list_image(args.root, args.recursive, args.exts)
    image_list = list(image_list)
    if args.shuffle is True:
        random.seed(100)
        random.shuffle(image_list)
    N = len(image_list)
    chunk_size = (N + args.chunks - 1) // args.chunks
    for i in range(args.chunks):
        chunk = image_list[i * chunk_size:(i + 1) * chunk_size]
        if args.chunks > 1:
            str_chunk = '_%d' % i
        else:
            str_chunk = ''
        sep = int(chunk_size * args.train_ratio)
        sep_test = int(chunk_size * args.test_ratio)
        if args.train_ratio == 1.0:
            _mx_write_list(args.prefix + str_chunk + '.lst', chunk)
        else:
            if args.test_ratio:
                _mx_write_list(args.prefix + str_chunk + '_test.lst', chunk[:sep_test])
            if args.train_ratio + args.test_ratio < 1.0:
                _mx_write_list(args.prefix + str_chunk + '_val.lst', chunk[sep_test + sep:])
            _mx_write_list(args.prefix + str_chunk + '_train.lst', chunk[sep_test:sep_test + sep])
# End of the MXNet excerpt.


def _random_tree(root: Path, rng: random.Random) -> None:
    names = ["a", "B", "c_1", "c10", "c2", "Zz", "_u", "x.y", "ä"]
    exts = [".jpg", ".JPG", ".jpeg", ".png", ".PNG", ".txt", ".npy", ".tif", ""]

    def fill(d: Path, depth: int) -> None:
        d.mkdir(parents=True, exist_ok=True)
        for _ in range(rng.randint(0, 6)):
            (d / (rng.choice(names) + str(rng.randint(0, 30)) + rng.choice(exts))).write_bytes(b"")
        if depth < 3:
            for _ in range(rng.randint(0, 3)):
                fill(d / (rng.choice(names) + "_d" + str(rng.randint(0, 9))), depth + 1)

    fill(root, 0)


@pytest.mark.parametrize("seed", range(12))
def test_lists_match_mxnet_on_random_trees(tmp_path, capsys, seed):
    rng = random.Random(seed)
    root = tmp_path / "tree"
    _random_tree(root, rng)
    opts = dict(recursive=rng.random() < 0.7, shuffle=rng.random() < 0.7, chunks=rng.randint(1, 4),
                train_ratio=rng.choice([1.0, 0.5, 0.8, 0.3, 0.65]), test_ratio=rng.choice([0, 0.1, 0.25, 0.5]),
                exts=rng.choice([[".jpeg", ".jpg", ".png"], [".png"], [".jpg", ".PNG"], [".npy", ".tif"]]))
    (tmp_path / "mx").mkdir()
    (tmp_path / "ours").mkdir()
    state = random.getstate()
    try:
        _mx_make_list(types.SimpleNamespace(root=str(root), prefix=str(tmp_path / "mx" / "p"), **opts))
    finally:
        random.setstate(state)
    mx_out = capsys.readouterr().out
    make_list(str(tmp_path / "ours" / "p"), str(root), **opts)
    assert capsys.readouterr().out == mx_out
    mx_files = sorted(os.listdir(tmp_path / "mx"))
    assert sorted(os.listdir(tmp_path / "ours")) == mx_files
    for name in mx_files:
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "mx" / name).read_bytes(), name


# ------------------------------------------------------------------------------------- read_list: §2.3

def test_read_list_parsing_and_skipping_rules(tmp_path, capsys):
    lst = tmp_path / "x.lst"
    lst.write_bytes(b"0\t1.000000\ta.jpg\n"
                    b"1\ta.jpg\n"                      # two parts: skipped
                    b"2 3.0 b.jpg\n"                   # space separated: one part, skipped
                    b"1.0\t0\tc.jpg\n"                 # int('1.0') fails: skipped
                    b"4\tcat\td.jpg\n"                 # bad label: skipped
                    b"  5 \t 2.5\t-1\t7e1\t dir/e f.png \r\n"  # fields are stripped; several labels
                    b"\n"                              # empty line: skipped
                    b"6\t0.5\tg.jpg")                  # no final newline
    items = list(read_list(str(lst)))
    assert items == [[0, "a.jpg", 1.0], [5, "dir/e f.png", 2.5, -1.0, 70.0], [6, "g.jpg", 0.5]]
    assert capsys.readouterr().out.splitlines() == [
        "lst should have at least has three parts, but only has 2 parts for ['1', 'a.jpg']",
        "lst should have at least has three parts, but only has 1 parts for ['2 3.0 b.jpg']",
        "Parsing lst met error for ['1.0', '0', 'c.jpg'], detail: invalid literal for int() with base 10: '1.0'",
        "Parsing lst met error for ['4', 'cat', 'd.jpg'], detail: could not convert string to float: 'cat'",
        "lst should have at least has three parts, but only has 1 parts for ['']",
    ]


# ------------------------------------------------------------------------ pack mode: headers, ids, bytes

@pytest.mark.parametrize("name,extra", [("color8", []), ("multilabel", ["--pack-label"]), ("multipart", []),
                                        ("gray16", [])])
def test_pass_through_reproduces_mxnet_written_files(tmp_path, name, extra, capsys):
    """MXNet wrote these .rec/.idx (tests/data/oracle); re-packing their image bytes with the same .lst must give
    the same bytes (headers, packed labels, ids, multi-part framing, .idx)."""
    r = recordio.MXIndexedRecordIO(str(ORACLE / f"{name}.idx"), str(ORACLE / f"{name}.rec"), "r")
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    for k in r.keys:
        _, s = recordio.unpack(r.read_idx(k))
        (img_dir / f"img_{k}.bin").write_bytes(s)
    r.close()
    shutil.copy(ORACLE / f"{name}.lst", tmp_path / f"{name}.lst")
    assert main([str(tmp_path / name), str(img_dir), "--pass-through", *extra]) == 0
    assert capsys.readouterr().out == f"Creating .rec file from {tmp_path / name}.lst in {tmp_path}\n"
    assert (tmp_path / f"{name}.rec").read_bytes() == (ORACLE / f"{name}.rec").read_bytes()
    assert (tmp_path / f"{name}.idx").read_bytes() == (ORACLE / f"{name}.idx").read_bytes()


def test_pass_through_bytes_from_pack_and_framing(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    rng = np.random.default_rng(0)
    blobs = {}
    for i, n in enumerate([0, 1, 5, 64, 1001]):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        if n >= 64:  # a 4-aligned RecordIO magic inside forces a multi-part record
            data = data[:16] + bytes.fromhex("0a23d7ce") + data[20:]
        blobs[f"f{i}.jpg"] = data
        (root / f"f{i}.jpg").write_bytes(data)
    rows = [(9, [2.0], "f0.jpg"), (3, [0.5, 7.0], "f1.jpg"), (3, [1.0], "f2.jpg"), (0, [-1.5, 2.0, 3.0], "f3.jpg"),
            (2**40, [4.0], "f4.jpg")]
    write_lst(tmp_path / "pt.lst", rows)
    for pack_label in (False, True):
        pack_list(str(tmp_path / "pt.lst"), str(root), str(tmp_path / "pt"),
                  PackOptions(pass_through=True, pack_label=pack_label))
        rec, idx, pos = b"", "", 0
        for i, labels, p in rows:
            label = labels if (pack_label and len(labels) > 1) else labels[0]
            framed = encode_record(recordio.pack(recordio.IRHeader(0, label, i, 0), blobs[p]))
            idx += "%d\t%d\n" % (i, pos)
            rec += framed
            pos += len(framed)
        assert (tmp_path / "pt.rec").read_bytes() == rec
        assert (tmp_path / "pt.idx").read_text() == idx


def test_pack_label_rules(tmp_path):
    root = tmp_path / "img"
    for i in range(3):
        write_image(root / f"{i}.png", tiny(i))
    write_lst(tmp_path / "m.lst", [(10, [1.5], "0.png"), (11, [1.0, 2.0, -3.0], "1.png"),
                                   (12, [4.0, 5.0], "2.png")])
    pack_list(str(tmp_path / "m.lst"), str(root), str(tmp_path / "plain"), PackOptions(encoding=".png"))
    pack_list(str(tmp_path / "m.lst"), str(root), str(tmp_path / "packed"),
              PackOptions(encoding=".png", pack_label=True))
    plain = read_records(tmp_path / "plain")
    assert [(k, h.flag, h.label, h.id, h.id2) for k, h, _ in plain] == [
        (10, 0, 1.5, 10, 0), (11, 0, 1.0, 11, 0), (12, 0, 4.0, 12, 0)]  # only the first label
    packed = read_records(tmp_path / "packed")
    assert [(k, h.flag, h.id) for k, h, _ in packed] == [(10, 0, 10), (11, 3, 11), (12, 2, 12)]
    assert packed[0][1].label == 1.5  # a single label stays scalar with flag 0
    np.testing.assert_array_equal(packed[1][1].label, np.float32([1, 2, -3]))
    np.testing.assert_array_equal(packed[2][1].label, np.float32([4, 5]))
    for (_, _, a), (_, _, b) in zip(plain, packed):
        assert a == b


# ------------------------------------------------------------------------------- pixels and depth (§2.5)

@pytest.mark.parametrize("name", ["gray16", "color16", "png8", "rgba8"])
@pytest.mark.parametrize("encoding", [".png", ".tiff"])
def test_color_unchanged_keeps_depth_and_channels_bit_exact(tmp_path, name, encoding):
    z = np.load(ORACLE / "sources" / f"{name}.npz")
    srcs = [z[f"arr_{i}"] for i in range(len(z.files))]
    root = tmp_path / "img"
    for i, a in enumerate(srcs):
        write_image(root / f"{i}.png", a)
    write_lst(tmp_path / "d.lst", [(i, [float(i)], f"{i}.png") for i in range(len(srcs))])
    pack_list(str(tmp_path / "d.lst"), str(root), str(tmp_path / "d"), PackOptions(color=-1, encoding=encoding))
    recs = read_records(tmp_path / "d")
    assert len(recs) == len(srcs)
    for (k, h, s), src in zip(recs, srcs):
        img = codecs.decode(s, -1)
        assert img.dtype == src.dtype and img.shape == src.shape
        np.testing.assert_array_equal(img, src)


def test_16bit_png_into_8bit_color_modes_is_high_byte(tmp_path):
    v = np.array([0, 1, 127, 128, 255, 256, 257, 383, 384, 511, 32767, 32768, 65023, 65280, 65407, 65535],
                 np.uint16).reshape(2, 8)
    expected = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 127, 128, 253, 255, 255, 255], np.uint8).reshape(2, 8)
    write_image(tmp_path / "img" / "v.png", v)
    write_lst(tmp_path / "v.lst", [(0, [0.0], "v.png")])
    pack_list(str(tmp_path / "v.lst"), str(tmp_path / "img"), str(tmp_path / "g"),
              PackOptions(color=0, encoding=".png"))
    pack_list(str(tmp_path / "v.lst"), str(tmp_path / "img"), str(tmp_path / "c"),
              PackOptions(color=1, encoding=".png"))
    g = codecs.decode(read_records(tmp_path / "g")[0][2], -1)
    c = codecs.decode(read_records(tmp_path / "c")[0][2], -1)
    np.testing.assert_array_equal(g, expected)
    assert c.shape == (2, 8, 3)
    for ch in range(3):
        np.testing.assert_array_equal(c[:, :, ch], expected)


def test_default_color_png_equals_cv2_imread_color(tmp_path):
    srcs = [tiny(1, (5, 7, 4)), tiny(2, (5, 7)), tiny(3, (4, 4, 3))]
    for i, a in enumerate(srcs):
        write_image(tmp_path / "img" / f"{i}.png", a)
    write_lst(tmp_path / "c.lst", [(i, [0.0], f"{i}.png") for i in range(3)])
    pack_list(str(tmp_path / "c.lst"), str(tmp_path / "img"), str(tmp_path / "c"), PackOptions(encoding=".png"))
    for i, (_, _, s) in enumerate(read_records(tmp_path / "c")):
        np.testing.assert_array_equal(codecs.decode(s, -1), cv2.imread(str(tmp_path / "img" / f"{i}.png"), 1))


@pytest.mark.parametrize("dtype,values", [(np.int16, [-32768, -1000, -1, 0, 1, 4095, 32767]),
                                          (np.float32, [-1.5, 0.0, 1e-7, 3.25, 1e30, -np.inf, 65535.5]),
                                          (np.uint16, [0, 1, 255, 256, 4095, 65535, 12345])])
def test_npy_sources_and_npy_payload_round_trip(tmp_path, dtype, values):
    gray = np.resize(np.array(values, dtype), (4, 5))
    color = np.stack([gray, gray[::-1], gray[:, ::-1]], axis=2)
    write_image(tmp_path / "img" / "g.npy", gray)
    write_image(tmp_path / "img" / "c.npy", color)
    write_lst(tmp_path / "n.lst", [(0, [0.0], "g.npy"), (1, [1.0], "c.npy")])
    for enc in (".npy", ".tiff"):
        result = pack_list(str(tmp_path / "n.lst"), str(tmp_path / "img"), str(tmp_path / "n"),
                           PackOptions(color=-1, encoding=enc, skip_errors=True))
        if result.failures:  # never silently lossy: an OpenCV that can't store it exactly refuses it
            assert enc == ".tiff" and all("'.npy'" in str(f) for f in result.failures)
            continue
        (_, _, s0), (_, _, s1) = read_records(tmp_path / "n")
        if enc == ".npy":
            assert codecs.sniff(s0) == "npy"
        for s, src in ((s0, gray), (s1, color)):
            out = codecs.decode(s, -1)
            assert out.dtype == src.dtype
            np.testing.assert_array_equal(out, src)


def test_tif_and_npy_sources_listed_and_packed_end_to_end(tmp_path, monkeypatch, capsys):
    src16 = (np.arange(7 * 9, dtype=np.uint16).reshape(7, 9) * 1031)
    srci16 = np.arange(-20, 43, dtype=np.int16).reshape(7, 9)
    write_image(tmp_path / "img" / "a.tif", src16)
    write_image(tmp_path / "img" / "b.TIFF", src16[::-1].copy())
    write_image(tmp_path / "img" / "c.npy", srci16)
    monkeypatch.chdir(tmp_path)
    assert main(["d", "img", "--list", "--no-shuffle", "--exts", ".tif", ".tiff", ".npy"]) == 0
    assert lst_lines(tmp_path / "d.lst") == ["0\t0.000000\ta.tif\n", "1\t0.000000\tb.TIFF\n",
                                             "2\t0.000000\tc.npy\n"]
    assert main(["d", "img", "--color", "-1", "--encoding", ".npy"]) == 0
    outs = [codecs.decode(s, -1) for _, _, s in read_records(tmp_path / "d")]
    for out, src in zip(outs, [src16, src16[::-1], srci16]):
        assert out.dtype == src.dtype
        np.testing.assert_array_equal(out, src)


@pytest.mark.parametrize("encoding,quality,params", [
    (".jpg", 95, [cv2.IMWRITE_JPEG_QUALITY, 95]), (".jpg", 20, [cv2.IMWRITE_JPEG_QUALITY, 20]),
    (".png", 95, [cv2.IMWRITE_PNG_COMPRESSION, 9]), (".png", 0, [cv2.IMWRITE_PNG_COMPRESSION, 0])])
def test_quality_is_jpeg_quality_or_clamped_png_level(tmp_path, encoding, quality, params):
    write_image(tmp_path / "img" / "x.png", tiny(5, (16, 16, 3)))
    write_lst(tmp_path / "q.lst", [(0, [0.0], "x.png")])
    pack_list(str(tmp_path / "q.lst"), str(tmp_path / "img"), str(tmp_path / "q"),
              PackOptions(encoding=encoding, quality=quality))
    ok, expected = cv2.imencode(encoding, cv2.imread(str(tmp_path / "img" / "x.png"), 1), params)
    assert read_records(tmp_path / "q")[0][2] == expected.tobytes()


@pytest.mark.parametrize("dtype,encoding,suggestion", [(np.int16, ".png", ".tiff"), (np.float32, ".png", ".npy"),
                                                       (np.int16, ".jpg", ".npy"), (np.uint16, ".jpg", ".png")])
def test_data_an_encoding_cannot_hold_is_an_error_naming_the_file(tmp_path, capsys, dtype, encoding, suggestion):
    write_image(tmp_path / "img" / "ok.png", tiny(0, (3, 3)))
    bad = write_image(tmp_path / "img" / "deep.npy", np.arange(12, dtype=dtype).reshape(3, 4) - 5)
    write_lst(tmp_path / "e.lst", [(0, [0.0], "ok.png"), (1, [0.0], "deep.npy")])
    rc = main([str(tmp_path / "e"), str(tmp_path / "img"), "--color", "-1", "--encoding", encoding])
    err = capsys.readouterr().err
    assert rc == 1
    assert str(bad) in err and suggestion in err
    assert sorted(os.listdir(tmp_path)) == ["e.lst", "img"]


def test_npy_that_is_not_an_image_is_an_error(tmp_path):
    write_image(tmp_path / "img" / "v.npy", np.arange(5, dtype=np.uint8))
    write_lst(tmp_path / "v.lst", [(0, [0.0], "v.npy")])
    with pytest.raises(Im2RecError) as ei:
        pack_list(str(tmp_path / "v.lst"), str(tmp_path / "img"), str(tmp_path / "v"),
                  PackOptions(color=-1, encoding=".npy"))
    assert ei.value.path == str(tmp_path / "img" / "v.npy") and ei.value.key == 0


# ---------------------------------------------------------------------------- geometry: crop and resize

@pytest.mark.parametrize("h,w,crop,resize,shape", [
    (30, 50, False, 20, (20, 33)),     # h <= w: (w*N//h, N)
    (50, 30, False, 20, (33, 20)),     # h > w: (N, h*N//w)
    (40, 40, False, 25, (25, 25)),
    (21, 10, False, 64, (134, 64)),    # upsampling too
    (30, 50, True, 0, (30, 30)),       # centre crop only
    (51, 30, True, 0, (30, 30)),
    (31, 50, True, 20, (20, 20)),      # crop before resize
])
def test_center_crop_and_resize_geometry_and_pixels(tmp_path, h, w, crop, resize, shape):
    src = tiny(h * w, (h, w, 3))
    write_image(tmp_path / "img" / "x.png", src)
    write_lst(tmp_path / "g.lst", [(0, [0.0], "x.png")])
    pack_list(str(tmp_path / "g.lst"), str(tmp_path / "img"), str(tmp_path / "png"),
              PackOptions(encoding=".png", center_crop=crop, resize=resize))
    pack_list(str(tmp_path / "g.lst"), str(tmp_path / "img"), str(tmp_path / "jpg"),
              PackOptions(center_crop=crop, resize=resize))
    expect = src
    if crop:  # spec §2.4 step 2
        if h > w:
            m = (h - w) // 2
            expect = expect[m:m + w]
        else:
            m = (w - h) // 2
            expect = expect[:, m:m + h]
    if resize:  # spec §2.4 step 3 (cv2 default INTER_LINEAR)
        eh, ew = expect.shape[:2]
        newsize = (resize, eh * resize // ew) if eh > ew else (ew * resize // eh, resize)
        expect = cv2.resize(expect, newsize)
    assert expect.shape[:2] == shape
    np.testing.assert_array_equal(codecs.decode(read_records(tmp_path / "png")[0][2], -1), expect)
    jpg = read_records(tmp_path / "jpg")[0][2]
    assert codecs.sniff(jpg) == "jpeg" and codecs.decode(jpg, -1).shape == shape + (3,)


def test_resize_keeps_16bit_and_single_channel_npy_layout(tmp_path):
    src = (np.arange(12 * 20, dtype=np.uint16).reshape(12, 20, 1) * 257)
    write_image(tmp_path / "img" / "a.npy", src)
    write_lst(tmp_path / "r.lst", [(0, [0.0], "a.npy")])
    pack_list(str(tmp_path / "r.lst"), str(tmp_path / "img"), str(tmp_path / "r"),
              PackOptions(color=-1, resize=6, encoding=".png"))
    out = codecs.decode(read_records(tmp_path / "r")[0][2], -1)
    np.testing.assert_array_equal(out, cv2.resize(src[:, :, 0], (10, 6)))
    assert out.dtype == np.uint16


def test_resize_short_keeps_a_single_channel_axis():
    out = im2rec.resize_short(np.zeros((12, 20, 1), np.float32), 6)
    assert out.shape == (6, 10, 1) and out.dtype == np.float32


# ----------------------------------------------------------------------------------- threads and order

def _many(tmp_path: Path, n: int = 24) -> Path:
    root = tmp_path / "img"
    for i in range(n):
        write_image(root / f"{i:02d}.png", tiny(i, (5 + i % 7, 9 + i % 5, 3)))
    rng = random.Random(1)
    ids = list(range(n))
    rng.shuffle(ids)
    write_lst(tmp_path / "t.lst", [(i, [float(i % 4)], f"{i:02d}.png") for i in ids])
    return root


def test_threads_give_the_same_bytes_as_one_thread(tmp_path):
    root = _many(tmp_path)
    for t in (1, 3):
        pack_list(str(tmp_path / "t.lst"), str(root), str(tmp_path / f"t{t}"),
                  PackOptions(num_thread=t, encoding=".png", resize=8))
    assert (tmp_path / "t1.rec").read_bytes() == (tmp_path / "t3.rec").read_bytes()
    assert (tmp_path / "t1.idx").read_bytes() == (tmp_path / "t3.idx").read_bytes()
    keys = [int(x.split("\t")[0]) for x in lst_lines(tmp_path / "t.lst")]
    assert [k for k, _, _ in read_records(tmp_path / "t3")] == keys


def test_threads_really_run_in_parallel(tmp_path, monkeypatch):
    root = _many(tmp_path, 8)
    seen, lock, barrier = set(), threading.Lock(), threading.Barrier(3, timeout=10)
    real = codecs.encode

    def encode(img, ext, quality):
        with lock:
            first_call_here = threading.get_ident() not in seen
            seen.add(threading.get_ident())
        if first_call_here:
            try:
                barrier.wait()  # each worker waits once: passes only if all three are inside at the same time
            except threading.BrokenBarrierError:
                pass
        return real(img, ext, quality)

    monkeypatch.setattr(codecs, "encode", encode)
    pack_list(str(tmp_path / "t.lst"), str(root), str(tmp_path / "p"), PackOptions(num_thread=3, encoding=".png"))
    assert len(seen) == 3 and not barrier.broken


# ------------------------------------------------------------------------ errors and atomic outputs

@pytest.mark.parametrize("threads", ["1", "3"])
def test_unreadable_image_stops_with_its_path_and_leaves_nothing(tmp_path, capsys, threads):
    root = _many(tmp_path, 10)
    (root / "04.png").write_bytes(b"this is not a png")
    (root / "07.png").unlink()
    rc = main([str(tmp_path / "t"), str(root), "--num-thread", threads, "--encoding", ".png"])
    err = capsys.readouterr().err
    assert rc == 1
    first_bad = next(p for p in (x.split("\t")[-1].strip() for x in lst_lines(tmp_path / "t.lst"))
                     if p in ("04.png", "07.png"))
    assert str(root / first_bad) in err
    assert sorted(os.listdir(tmp_path)) == ["img", "t.lst"]  # no .rec/.idx, no temporary files


def test_failed_run_leaves_earlier_outputs_untouched(tmp_path):
    root = _many(tmp_path, 4)
    pack_list(str(tmp_path / "t.lst"), str(root), str(tmp_path / "t"), PackOptions(encoding=".png"))
    before = {n: (tmp_path / n).read_bytes() for n in ("t.rec", "t.idx")}
    (root / "02.png").unlink()
    with pytest.raises(Im2RecError) as ei:
        pack_list(str(tmp_path / "t.lst"), str(root), str(tmp_path / "t"), PackOptions(encoding=".jpg"))
    assert ei.value.path == str(root / "02.png") and "no such file" in str(ei.value)
    assert {n: (tmp_path / n).read_bytes() for n in ("t.rec", "t.idx")} == before
    assert sorted(os.listdir(tmp_path)) == ["img", "t.idx", "t.lst", "t.rec"]


@pytest.mark.parametrize("threads", [1, 3])
def test_skip_errors_packs_the_rest_and_fails_at_the_end(tmp_path, capsys, threads):
    root = _many(tmp_path, 12)
    (root / "03.png").write_bytes(b"")
    (root / "08.png").unlink()
    rc = main([str(tmp_path / "t"), str(root), "--num-thread", str(threads), "--encoding", ".png",
               "--skip-errors"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{root / '03.png'} (.lst index 3): cannot read image: empty file" in err
    assert f"{root / '08.png'} (.lst index 8): cannot read image: no such file" in err
    keys = [int(x.split("\t")[0]) for x in lst_lines(tmp_path / "t.lst")]
    assert [k for k, _, _ in read_records(tmp_path / "t")] == [k for k in keys if k not in (3, 8)]
    reported = []
    result = pack_list(str(tmp_path / "t.lst"), str(root), str(tmp_path / "api"),
                       PackOptions(num_thread=threads, encoding=".png", skip_errors=True), on_skip=reported.append)
    assert result.written == 10 and sorted(e.key for e in result.failures) == [3, 8]
    assert reported == result.failures  # reported as they happen, in list order
    assert [e.key for e in reported] == [k for k in keys if k in (3, 8)]


@pytest.mark.parametrize("threads", [1, 3])
def test_interrupted_run_leaves_no_final_files(tmp_path, capsys, monkeypatch, threads):
    root = _many(tmp_path, 12)
    calls, lock = [0], threading.Lock()
    real = codecs.encode

    def encode(img, ext, quality):
        with lock:
            calls[0] += 1
            n = calls[0]
        if n == 5:
            raise KeyboardInterrupt
        return real(img, ext, quality)

    monkeypatch.setattr(codecs, "encode", encode)
    assert main([str(tmp_path / "t"), str(root), "--num-thread", str(threads)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["img", "t.lst"]
    calls[0] = 0
    with pytest.raises(KeyboardInterrupt):
        pack_list(str(tmp_path / "t.lst"), str(root), str(tmp_path / "t"), PackOptions(num_thread=threads))
    assert sorted(os.listdir(tmp_path)) == ["img", "t.lst"]


def test_bad_header_values_are_errors_per_file(tmp_path):
    write_image(tmp_path / "img" / "a.png", tiny(0, (2, 2)))
    write_lst(tmp_path / "h.lst", [(-1, [0.0], "a.png")])
    with pytest.raises(Im2RecError, match="header"):
        pack_list(str(tmp_path / "h.lst"), str(tmp_path / "img"), str(tmp_path / "h"), PackOptions())
    assert sorted(os.listdir(tmp_path)) == ["h.lst", "img"]


# ------------------------------------------------------------------------------ command line behaviour

def test_prefix_selects_every_matching_list(tmp_path, capsys):
    root = _many(tmp_path, 4)
    shutil.copy(tmp_path / "t.lst", tmp_path / "t_val.lst")
    shutil.copy(tmp_path / "t.lst", tmp_path / "other.lst")
    assert main([str(tmp_path / "t"), str(root), "--pass-through"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"Creating .rec file from {tmp_path / n} in {tmp_path}" for n in ("t.lst", "t_val.lst")]
    assert (tmp_path / "t.rec").read_bytes() == (tmp_path / "t_val.rec").read_bytes()
    assert not (tmp_path / "other.rec").exists()


def test_directory_prefix_selects_all_lists(tmp_path, capsys):
    root = _many(tmp_path, 3)
    lists = tmp_path / "lists"
    lists.mkdir()
    shutil.move(tmp_path / "t.lst", lists / "a.lst")
    shutil.copy(lists / "a.lst", lists / "b.lst")
    assert main([str(lists), str(root), "--encoding", ".png"]) == 0
    assert sorted(os.listdir(lists)) == ["a.idx", "a.lst", "a.rec", "b.idx", "b.lst", "b.rec"]


def test_no_list_found_prints_mxnets_message(tmp_path, capsys):
    assert main([str(tmp_path / "nothing"), str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"Did not find and list file with prefix {tmp_path / 'nothing'}\n"


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, capsys):
    root = _many(tmp_path, 5)
    assert main([str(tmp_path / "t"), str(root)]) == 0
    assert capsys.readouterr().err == ""  # stderr is not a terminal here: quiet
    pack_list(str(tmp_path / "t.lst"), str(root), str(tmp_path / "p"), PackOptions(progress=True))
    err = capsys.readouterr().err
    assert err.startswith("\rt.lst") and "5/5" in err and err.endswith("\n")


def test_exts_gotcha_is_kept(tmp_path, capsys):
    # nargs='+' swallows the positionals as in MXNet: --exts must come last.
    assert main(["--exts", ".png", "p", "r"]) == 2
    assert "required: prefix, root" in capsys.readouterr().err


def test_python_dash_m_runs(tmp_path):
    root = _many(tmp_path, 3)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "recordgpu.im2rec", "t", "img", "--encoding", ".png"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(read_records(tmp_path / "t")) == 3
    (root / "01.png").unlink()
    proc = subprocess.run([sys.executable, "-m", "recordgpu.im2rec", "t", "img"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and str(root / "01.png") in proc.stderr
    help_ = subprocess.run([sys.executable, "-m", "recordgpu.im2rec", "--help"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and "MXNet cannot decode" in " ".join(help_.stdout.split())
