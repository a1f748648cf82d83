"""``ofa-edge train`` and ``release``: progressive shrinking, and a finished run's weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ofa_edge.cli.common import add_command, add_host_threads, add_supernet, set_host_threads
from ofa_edge.cli.output import Output


def _cmd_train(args: argparse.Namespace, out: Output) -> int:
    import dataclasses

    from ofa_edge.data import load_split
    from ofa_edge.distributed import join
    from ofa_edge.training import Trainer, fit_config, load_recipe
    from ofa_edge.training.curve import CURVE_FILE

    group = join()  # one process, or this process's rank when torchrun started it
    set_host_threads(args)
    config = load_recipe(args.recipe)
    if args.init:
        config = dataclasses.replace(config, init=args.init)
    train = group.main_first(  # rank 0 decodes and caches the images, then the others read them
        lambda: load_split(args.data, "train", config.image_size, size_if_mixed=max(config.resolutions))
    )
    main = group.is_main
    trainer = Trainer(
        fit_config(config, train),
        train,
        Path(args.out),
        checkpoint_minutes=args.checkpoint_minutes,
        log=(lambda line: print(line, file=sys.stderr, flush=True)) if main else (lambda line: None),
        group=group,
        progress=out.counter("training", "step") if main else None,
    )
    finished = trainer.run(None if args.hours is None else args.hours * 3600)
    if not main:
        return 0
    state = trainer.state
    curve = Path(args.out) / CURVE_FILE  # drawn after the first epoch
    out.result(
        "train",
        {
            "finished": finished,
            "run_dir": str(Path(args.out).resolve()),
            "processes": group.world_size,
            "log": state.log,
            "curve": str(curve.resolve()) if curve.is_file() else None,
            "train_seconds": state.train_seconds,
            "train_cpu_seconds": state.train_cpu_seconds,
        },
        f"{'finished' if finished else 'paused (run the same command to resume)'}: "
        f"{len(state.log)} epochs logged, {state.train_seconds / 3600:.2f} h "
        f"({state.train_cpu_seconds / 3600:.2f} CPU-h), checkpoint in {args.out}"
        + (f", curve {curve}" if curve.is_file() else ""),
    )
    return 0


def _cmd_release(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.training.release import release_weights

    made = release_weights(
        args.run,
        args.out,
        supernet=args.supernet,
        allow_unfinished=args.allow_unfinished,
        name=args.name,
        entry=args.entry,
    )
    text = f"{made.path}: {made.size_bytes / 1e6:.2f} MB fp16, sha256 {made.sha256}"
    if made.entry is not None:
        text += f"\nsupernet entry {made.entry} (name {made.supernet}): pass --supernet {made.entry}"
    out.result(
        "release",
        {
            "path": str(made.path),
            "sha256": made.sha256,
            "bytes": made.size_bytes,
            "supernet": made.supernet,
            "entry": None if made.entry is None else str(made.entry),
        },
        text,
    )
    return 0


def register(sub: Any) -> None:
    """Add ``train`` and ``release``."""
    p = add_command(sub, "train", "train a supernet (progressive shrinking); resumes")
    p.add_argument("--data", required=True, help="ImageFolder dir or .tar.gz with train/<class>/")
    p.add_argument(
        "--out", required=True, metavar="RUN_DIR", help="run folder (resumed if it holds a checkpoint)"
    )
    p.add_argument(
        "--recipe",
        default="cifar10-default",
        metavar="NAME|FILE.toml",
        help="training recipe: a shipped one (cifar10-default, cifar10-v2, smoke) or a TOML file",
    )
    p.add_argument(
        "--init",
        metavar="SUPERNET|WEIGHTS",
        help="start a new run from these weights (registry name, entry file, weights or run folder); "
        "the classifier is new",
    )
    p.add_argument(
        "--hours", type=float, help="pause, checkpointed, after this long (default: run to the end)"
    )
    p.add_argument("--checkpoint-minutes", type=float, default=5.0, help="minutes between checkpoints")
    add_host_threads(p)
    p.set_defaults(func=_cmd_train)

    p = add_command(sub, "release", "a finished training run's weights as fp16")
    p.add_argument("run", metavar="RUN_DIR", help="the run folder of ofa-edge train (or its checkpoint.pt)")
    p.add_argument("--out", required=True, help="weights file to write")
    add_supernet(
        p,
        "registry supernet (or entry file) the weights are for (default: none; write a supernet entry "
        "file for the run's own layout)",
        default=None,
    )
    p.add_argument(
        "--name", help="name of the supernet entry written without --supernet (default: the run folder's)"
    )
    p.add_argument(
        "--entry",
        metavar="ENTRY.toml",
        help="supernet entry file to write without --supernet (default: --out with suffix .toml)",
    )
    p.add_argument("--allow-unfinished", action="store_true", help="release a run still training")
    p.set_defaults(func=_cmd_release)
