"""Command line of the benchmark harness: ``python -m bench {read,iter,all,setup} [options]``."""
from __future__ import annotations

import argparse
import subprocess
import sys

from . import iterators, read_throughput
from .common import write_json
from .peers import DEVICE_LOADERS, LOADERS, PEERS, LoaderUnavailable, interpreter


def _setup(args: argparse.Namespace) -> int:
    """Create the peers' virtualenvs and, unless told not to, install scikit-image here."""
    failed = 0
    if not args.no_skimage:
        print(f"pip install scikit-image into {sys.prefix} (bench datasets only) ...", flush=True)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                            "scikit-image"])
        failed += r.returncode != 0
    peer_loaders = DEVICE_LOADERS[args.device][2]
    for name in args.peers:
        if name not in peer_loaders:
            print(f"{name}: has no {args.device.upper()} pipeline; nothing to set up", flush=True)
            continue
        name = peer_loaders[name]
        try:
            py = interpreter(LOADERS[name], install=True)
            print(f"{name}: ready ({py})", flush=True)
        except LoaderUnavailable as e:
            print(f"{name}: unavailable: {e}", flush=True)
            failed += 1
    return 1 if failed else 0


def _sub_namespace(add_arguments, ns: argparse.Namespace) -> argparse.Namespace:
    """Defaults of one bench's options, overridden by the values ``ns`` has for them; no JSON file."""
    p = argparse.ArgumentParser()
    add_arguments(p)
    sub = p.parse_args([])
    for k in vars(sub):
        if hasattr(ns, k):
            setattr(sub, k, getattr(ns, k))
    sub.json = None
    return sub


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="recordgpu benchmarks")
    sub = p.add_subparsers(dest="cmd", required=True)
    read_throughput.add_arguments(sub.add_parser("read", help="RecordIO read throughput (part A)"))
    iterators.add_arguments(sub.add_parser("iter", help="ImageRecordIter throughput vs peers (part B)"))
    # `all` takes the options of both (shared ones such as --data, --seed and --json once)
    a = sub.add_parser("all", help="read, then iter", conflict_handler="resolve")
    read_throughput.add_arguments(a)
    iterators.add_arguments(a)
    a.add_argument("--json", help="also write both benches' results to this JSON file")
    s = sub.add_parser("setup", help="create the peers' virtualenvs (and install scikit-image here)")
    s.add_argument("--peers", type=iterators.parse_peers, default=list(PEERS),
                   help=f"comma list of peers (default {','.join(PEERS)})")
    s.add_argument("--no-skimage", action="store_true", help="do not pip install scikit-image")
    s.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="set up the peers of the CPU bench (default) or of the GPU bench (DALI with CuPy)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "read":
        read_throughput.run(args)
    elif args.cmd == "iter":
        iterators.run(args)
    elif args.cmd == "setup":
        return _setup(args)
    else:
        read = read_throughput.run(_sub_namespace(read_throughput.add_arguments, args))
        print(flush=True)
        it = iterators.run(_sub_namespace(iterators.add_arguments, args))
        if args.json:
            write_json(args.json, {"read": read, "iter": it})
    return 0


if __name__ == "__main__":
    sys.exit(main())
