"""The ``recordgpu`` command (also ``python -m recordgpu``): im2rec, info, index."""
from __future__ import annotations

import argparse
import logging
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    from .recinfo import rec_info

    info = rec_info(args.rec, args.idx, sample=None if args.all else args.sample, progress=None)
    print("\n".join(info.lines()))
    return 1 if info.problems else 0


def _cmd_index(args: argparse.Namespace) -> int:
    from .recinfo import write_index

    path = write_index(args.rec, args.out, force=args.force, keys=args.keys)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(prog="recordgpu", description="MXNet RecordIO (.rec/.idx) tools without MXNet.")
    p.add_argument("--version", action="version", version=f"recordgpu {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("im2rec", help="make .lst lists or pack images into .rec/.idx (MXNet im2rec.py options)",
                   add_help=False)
    sub.add_parser("preview", help="contact sheet (PNG) of records, as stored or augmented, with labels",
                   add_help=False)
    pi = sub.add_parser("info", help="describe a .rec: records, dialect, labels, formats, depths, problems")
    pi.add_argument("rec")
    pi.add_argument("--idx", help="use this .idx (default: scan the file)")
    pi.add_argument("--sample", type=int, default=1000, help="decode at most this many images (default 1000)")
    pi.add_argument("--all", action="store_true", help="decode every image record")
    pi.set_defaults(func=_cmd_info)
    px = sub.add_parser("index", help="scan a .rec and write its missing .idx")
    px.add_argument("rec")
    px.add_argument("--out", help="output .idx path (default: beside the .rec)")
    px.add_argument("--force", action="store_true", help="overwrite an existing .idx")
    px.add_argument("--keys", choices=["id", "seq"], default="id",
                    help="keys: the image header ids (default; as im2rec writes them) or record numbers")
    px.set_defaults(func=_cmd_index)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "im2rec":
        from .im2rec import main as im2rec_main

        return im2rec_main(argv[1:], prog="recordgpu im2rec")
    if argv and argv[0] == "preview":
        from .preview import main as preview_main

        return preview_main(argv[1:], prog="recordgpu preview")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from .errors import RecordIOError

    try:
        return args.func(args)
    except (RecordIOError, FileExistsError, FileNotFoundError) as e:
        print(f"recordgpu {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
