"""``num_parts='auto'`` / ``part_index='auto'`` (recordgpu.imageiter.distributed).

World size and rank come from an initialised ``torch.distributed`` group, else from ``WORLD_SIZE``/``RANK``,
else (1, 0). The partition each process then reads is MXNet's: checked against MXNet's own batches for
the oracle ``parts_*`` cases, and, with two processes started by ``torchrun`` (gloo, CPU), against
``partition_records``: shards disjoint, covering the data, in MXNet's order.

This file is also the torchrun worker (``python -m torch.distributed.run ... test_distributed.py --worker``).
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORACLE = HERE / "data" / "oracle"
if __name__ == "__main__":  # started by torchrun: make the package and the fixtures importable
    sys.path[:0] = [str(ROOT), str(HERE)]

from recordgpu import ImageRecordIter  # noqa: E402
from recordgpu.imageiter import iterator as iterator_module  # noqa: E402
from recordgpu.imageiter.distributed import resolve_parts, world_and_rank  # noqa: E402
from recordgpu.imageiter.order import RecordLayout, partition_records  # noqa: E402
from recordgpu.imageiter.params import parse_iter_kwargs  # noqa: E402
from recordgpu.imageiter.source import RecordSource  # noqa: E402

CASES = json.loads((ORACLE / "cases.json").read_text())
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                 "ROLE_WORLD_SIZE")
# what each torchrun worker reads with num_parts='auto', part_index='auto' (unshuffled: MXNet's order)
SHARDED = {
    "color8_idx": dict(path_imgrec=str(ORACLE / "color8.rec"), path_imgidx=str(ORACLE / "color8.idx")),
    "color8_bytes": dict(path_imgrec=str(ORACLE / "color8.rec")),
    "multipart_bytes": dict(path_imgrec=str(ORACLE / "multipart.rec")),
}


# -- until params.py resolves 'auto' itself: route the iterator's kwargs through resolve_parts ----------------
def _params_take_auto() -> bool:
    try:
        parse_iter_kwargs(path_imgrec="x.rec", data_shape=(3, 8, 8), batch_size=1, num_parts="auto",
                          part_index="auto")
    except ValueError:
        return False
    return True


def _parse_with_auto(**kwargs):
    if "auto" in (kwargs.get("num_parts"), kwargs.get("part_index")):
        n, i = resolve_parts(kwargs.get("num_parts", 1), kwargs.get("part_index", 0))
        kwargs = {**kwargs, "num_parts": n, "part_index": i}
    return parse_iter_kwargs(**kwargs)


@pytest.fixture
def auto_parts(monkeypatch):
    for k in LAUNCHER_VARS:
        monkeypatch.delenv(k, raising=False)
    if not _params_take_auto():
        monkeypatch.setattr(iterator_module, "parse_iter_kwargs", _parse_with_auto)
    return monkeypatch


# -- resolve_parts -------------------------------------------------------------------------------------------
def fake_torch_distributed(monkeypatch, world: int, rank: int, initialized: bool = True) -> None:
    dist = types.SimpleNamespace(is_available=lambda: True, is_initialized=lambda: initialized,
                                 get_world_size=lambda: world, get_rank=lambda: rank)
    monkeypatch.setitem(sys.modules, "torch.distributed", dist)


def test_alone_without_launcher_or_process_group(auto_parts):
    auto_parts.delitem(sys.modules, "torch.distributed", raising=False)
    assert world_and_rank() == (1, 0)
    assert resolve_parts("auto", "auto") == (1, 0)


def test_launcher_environment_gives_world_and_rank(auto_parts):
    auto_parts.setenv("WORLD_SIZE", "4")
    auto_parts.setenv("RANK", "3")
    fake_torch_distributed(auto_parts, 8, 5, initialized=False)  # a group not initialised is ignored
    assert resolve_parts("auto", "auto") == (4, 3)
    assert resolve_parts("auto", 1) == (4, 1)
    assert resolve_parts(4, "auto") == (4, 3)
    assert resolve_parts(np.int64(2), "1") == (2, 1)


def test_an_initialised_process_group_wins_over_the_environment(auto_parts):
    auto_parts.setenv("WORLD_SIZE", "4")
    auto_parts.setenv("RANK", "3")
    fake_torch_distributed(auto_parts, 2, 1)
    assert resolve_parts("auto", "auto") == (2, 1)


@pytest.mark.parametrize("env, match", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK is not"),
    ({"RANK": "0"}, "RANK is set but WORLD_SIZE is not"),
    ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "rank 2 of world size 2"),
    ({"WORLD_SIZE": "0", "RANK": "0"}, "rank 0 of world size 0"),
])
def test_bad_launcher_environment_is_a_clear_error(auto_parts, env, match):
    auto_parts.delitem(sys.modules, "torch.distributed", raising=False)
    for k, v in env.items():
        auto_parts.setenv(k, v)
    with pytest.raises(ValueError, match=match):
        resolve_parts("auto", "auto")
    assert resolve_parts(2, 1) == (2, 1)  # explicit values do not need the environment


def test_inconsistent_or_invalid_values_are_refused(auto_parts):
    auto_parts.setenv("WORLD_SIZE", "2")
    auto_parts.setenv("RANK", "1")
    with pytest.raises(ValueError, match="num_parts must be 'auto' or 2, got 4"):
        resolve_parts(4, "auto")  # rank 1 of 2 reading part 1 of 4 would leave half the data unread
    with pytest.raises(ValueError, match=r"part_index must be in \[0, num_parts\) = \[0, 2\), got 3"):
        resolve_parts("auto", 3)
    with pytest.raises(ValueError, match="num_parts must be an integer or 'auto'"):
        resolve_parts("Auto", "auto")
    with pytest.raises(ValueError, match="part_index must be an integer or 'auto'"):
        resolve_parts("auto", True)


# -- the iterator reads MXNet's partition -----------------------------------------------------------------------
def oracle_kwargs(name: str) -> dict:
    kw = dict(CASES[name]["kwargs"])
    for k in ("path_imgrec", "path_imgidx"):
        if k in kw:
            kw[k] = str(ORACLE / kw[k])
    return kw


@pytest.mark.parametrize("name", ["parts_0", "parts_1", "parts_2", "noidx_parts"])
def test_auto_reads_the_part_mxnet_read(auto_parts, name):
    """The oracle cases ran MXNet with explicit num_parts/part_index; a process that is that rank of that
    world, asked for 'auto', gets MXNet's batches."""
    kw = oracle_kwargs(name)
    auto_parts.setenv("WORLD_SIZE", str(kw.pop("num_parts")))
    auto_parts.setenv("RANK", str(kw.pop("part_index")))
    z = np.load(ORACLE / "cases" / f"{name}.npz")
    with ImageRecordIter(**kw, num_parts="auto", part_index="auto", preprocess_threads=1) as it:
        assert (it.params.num_parts, it.params.part_index) == (int(os.environ["WORLD_SIZE"]),
                                                               int(os.environ["RANK"]))
        for epoch in range(2):
            if epoch:
                it.reset()
            batches = list(it)
            assert len(batches) == len([k for k in z.files if k.startswith(f"e{epoch}_") and k.endswith("_data")])
            for b, batch in enumerate(batches):
                assert np.array_equal(np.array(batch.data[0]), z[f"e{epoch}_b{b}_data"])
                assert np.array_equal(np.array(batch.label[0]), z[f"e{epoch}_b{b}_label"])
                assert batch.pad == int(z[f"e{epoch}_b{b}_pad"])


def test_auto_on_a_single_process_reads_everything(auto_parts):
    auto_parts.delitem(sys.modules, "torch.distributed", raising=False)
    with ImageRecordIter(**SHARDED["color8_idx"], data_shape=(3, 16, 16), batch_size=4, num_parts="auto",
                         part_index="auto") as it:
        assert (it.params.num_parts, it.params.part_index) == (1, 0)


def test_a_rank_outside_num_parts_is_refused_by_the_iterator(auto_parts):
    auto_parts.setenv("WORLD_SIZE", "2")
    auto_parts.setenv("RANK", "1")
    with pytest.raises(ValueError, match="num_parts must be 'auto' or 2"):
        ImageRecordIter(**SHARDED["color8_idx"], data_shape=(3, 16, 16), batch_size=4, part_index="auto")


# -- two processes under torchrun ----------------------------------------------------------------------------------
def expected_shard_ids(kw: dict, num_parts: int, part_index: int) -> list[int]:
    """Record ids of MXNet's partition, in file order (partition_records on the layout the iterator reads)."""
    src = RecordSource(kw["path_imgrec"], kw.get("path_imgidx", ""))
    try:
        layout = RecordLayout(start=src.start, end=src.end, total_bytes=src.total_bytes, indexed=src.indexed,
                              extent=src.extent if src.indexed else None,
                              num_extents=src.num_extents if src.indexed else None)
        recs = partition_records(layout, num_parts, part_index)
        return [struct.unpack_from("<IfQ", src.payload(int(r)))[2] for r in recs]
    finally:
        src.close()


def worker(out_dir: str) -> None:
    """One torchrun process: join the gloo group, forget the launcher's variables (so the partition must come
    from the group), read this rank's shard of each data set, and gather the shards on rank 0."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    for k in LAUNCHER_VARS:
        os.environ.pop(k, None)
    if not _params_take_auto():
        iterator_module.parse_iter_kwargs = _parse_with_auto
    result = {"rank": dist.get_rank(), "world": dist.get_world_size(), "shards": {}}
    for name, kw in SHARDED.items():
        with ImageRecordIter(**kw, data_shape=(3, 16, 16), batch_size=2, round_batch=False,
                             num_parts="auto", part_index="auto", preprocess_threads=1) as it:
            ids = [int(i) for b in it for i in np.asarray(b.index)[: len(b.index) - b.pad]]
            result["shards"][name] = {"parts": [it.params.num_parts, it.params.part_index], "ids": ids}
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, result)
    if dist.get_rank() == 0:
        Path(out_dir, "shards.json").write_text(json.dumps(gathered))
    dist.barrier()
    dist.destroy_process_group()


def test_torchrun_ranks_read_disjoint_shards_that_cover_the_data(tmp_path):
    pytest.importorskip("torch.distributed")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS and k != "MASTER_PORT"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           str(Path(__file__).resolve()), "--worker", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    gathered = json.loads((tmp_path / "shards.json").read_text())
    assert sorted((g["rank"], g["world"]) for g in gathered) == [(0, 2), (1, 2)]
    for name, kw in SHARDED.items():
        shards = {g["rank"]: g["shards"][name] for g in gathered}
        everything = expected_shard_ids(kw, 1, 0)
        for rank, shard in shards.items():
            assert shard["parts"] == [2, rank]
            assert shard["ids"] == expected_shard_ids(kw, 2, rank), name  # MXNet's partition and order
            assert shard["ids"], f"{name}: rank {rank} read nothing"
        assert not set(shards[0]["ids"]) & set(shards[1]["ids"]), name
        assert sorted(shards[0]["ids"] + shards[1]["ids"]) == sorted(everything), name


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--worker":
        sys.exit("usage: test_distributed.py --worker OUT_DIR (started by torchrun)")
    worker(sys.argv[2])
