"""``ofa-edge eval``, ``accuracy build`` and ``accuracy fit``: measured top-1 of subnets (BN
recalibrated first), and the accuracy predictor trained on them."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ofa_edge.cli.common import (
    add_command,
    add_group,
    add_host_threads,
    add_subnet_args,
    add_supernet,
    chosen_subnet,
    set_host_threads,
)
from ofa_edge.cli.output import Output


def _load_net(supernet: str, checkpoint: str | None) -> Any:
    """The supernet with its registry weights, or those of ``checkpoint`` (release file or run)."""
    from ofa_edge.supernet.registry import get_supernet_info, load_supernet
    from ofa_edge.training.release import load_weights

    if checkpoint is None:
        return load_supernet(supernet)
    net = get_supernet_info(supernet).build()
    net.load_state_dict(load_weights(checkpoint))
    return net.eval()


def _cmd_eval(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.accuracy.calibration import eval_calibration
    from ofa_edge.accuracy.measure import subnet_top1
    from ofa_edge.data import align_classes, load_split
    from ofa_edge.supernet.registry import get_supernet_info

    test = load_split(args.data, "test")
    set_host_threads(args)
    net = _load_net(args.supernet, args.checkpoint)
    arch = chosen_subnet(args, net.spec)
    calib, calib_split = eval_calibration(args.data, test)
    test = align_classes(test, calib.classes)
    started = time.perf_counter()
    top1 = subnet_top1(net, arch, calib, test, get_supernet_info(args.supernet).preprocessing)
    seconds = time.perf_counter() - started
    out.result(
        "eval",
        {
            "supernet": args.supernet,
            "checkpoint": args.checkpoint,
            "arch": arch.to_dict(),
            "top1": top1,
            "images": len(test),
            "calibration": {"split": calib_split, "images": len(calib)},
            "seconds": round(seconds, 3),
        },
        f"top-1 {top1:.2f}% on {len(test)} test images at {arch.r}px "
        f"(BN recalibrated on {len(calib)} {calib_split} images, {seconds:.1f} s)",
    )
    return 0


def _cmd_accuracy_build(args: argparse.Namespace, out: Output) -> int:
    """Measure a table in this process, or (under torchrun) share the subnets among the ranks:
    rank 0 writes the table and prints the result, the other ranks print nothing."""
    from ofa_edge.accuracy.calibration import calibration_and_validation
    from ofa_edge.accuracy.table import build_accuracy_table, check_workers
    from ofa_edge.data import load_split
    from ofa_edge.distributed import join
    from ofa_edge.errors import ConfigError

    if args.samples < 1 or args.val_images < 1 or args.workers < 1:
        raise ConfigError("--samples, --val-images and --workers must be at least 1")
    group = join()  # one process, or this process's rank when torchrun started it
    check_workers(args.workers, group)
    train = group.main_first(lambda: load_split(args.data, "train"))  # rank 0 decodes and caches
    calib, val = calibration_and_validation(train)
    val = val.subset(args.val_images)
    set_host_threads(args)
    net = _load_net(args.supernet, args.checkpoint)
    name = Path(args.data).name
    table = build_accuracy_table(
        net,
        args.supernet,
        args.out,
        n=args.samples,
        seed=args.seed,
        calib=calib,
        val=val,
        calib_source=f"{name} train: fixed calibration set (trained-on images)",
        val_source=f"{name} train: held-out validation images",
        workers=args.workers,
        progress=out.counter("accuracy", "subnet") if group.is_main else None,
        group=group,
    )
    if not group.is_main:
        return 0
    rows = [r for r in table.records if r.index < args.samples]
    top1 = [r.top1 for r in rows]
    seconds = sum(r.seconds for r in rows) / max(1, len(rows))
    out.result(
        "accuracy-build",
        {
            "out": str(args.out),
            "supernet": args.supernet,
            "subnets": len(rows),
            "top1_min": min(top1),
            "top1_max": max(top1),
            "mean_seconds_per_subnet": seconds,
            "processes": group.world_size,
        },
        f"{len(rows)} subnets in {args.out}: top-1 {min(top1):.2f}-{max(top1):.2f}% on {len(val)} "
        f"held-out images, {seconds:.1f} s per subnet"
        + (f" ({group.world_size} processes)" if group.world_size > 1 else ""),
    )
    return 0


def _cmd_accuracy_fit(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.accuracy.predictor import ArchEncoder, fit_plot, fit_predictor, save_predictor
    from ofa_edge.accuracy.table import read_table
    from ofa_edge.errors import ConfigError
    from ofa_edge.files import sha256_file
    from ofa_edge.supernet.registry import get_supernet_info

    table = read_table(args.table)
    supernet = table.header["supernet"]
    info = get_supernet_info(args.supernet or supernet)
    if info.name != supernet:
        raise ConfigError(
            f"{args.table} measured supernet {supernet!r}, not {info.name!r}",
            hint=f"pass --supernet {supernet} (or its entry file)",
        )
    space = info.spec.space
    fit = fit_predictor(  # a fraction, as MIT's predictors give (the table stores percent)
        [r.arch for r in table.records],
        [r.top1 / 100 for r in table.records],
        ArchEncoder.for_space(space),
        epochs=args.epochs,
        seed=args.seed,
    )
    metrics = {**fit.metrics, "table_sha256": sha256_file(args.table), "target": "top-1 as a fraction"}
    save_predictor(fit.predictor, args.out, supernet, metrics)
    if args.plot:
        fit_plot(fit, f"{supernet}: accuracy predictor", Path(args.plot))
    out.result(
        "accuracy-fit",
        {"out": str(args.out), "supernet": supernet, "plot": args.plot, **metrics},
        f"{args.out}: trained on {fit.n_train} subnets; on {fit.n_val} held out RMSE {fit.rmse:.4f} "
        f"({100 * fit.rmse:.2f} points), "
        f"Spearman {fit.spearman:.3f}" + (f"; plot {args.plot}" if args.plot else ""),
    )
    return 0


def register(sub: Any) -> None:
    """Add ``eval``, ``accuracy build`` and ``accuracy fit``."""

    def weights(p: argparse.ArgumentParser) -> None:
        add_supernet(p)
        p.add_argument(
            "--checkpoint",
            help="weights file, or an ofa-edge train run (dir or checkpoint.pt) (default: the registry's)",
        )
        add_host_threads(p)

    p = add_command(sub, "eval", "top-1 of one subnet on DATA/test, BN recalibrated")
    weights(p)
    add_subnet_args(p)
    p.add_argument("--data", required=True, help="ImageFolder dir or .tar.gz with test/<class>/")
    p.set_defaults(func=_cmd_eval)

    asub = add_group(sub, "accuracy", "accuracy tables of random subnets, and the predictor")
    p = add_command(asub, "build", "measure random subnets for the accuracy predictor (resumes)")
    weights(p)
    p.add_argument("--data", required=True, help="ImageFolder dir or .tar.gz with train/<class>/")
    p.add_argument("--out", required=True, type=Path, help="table file, JSON lines (resumed if it exists)")
    p.add_argument("--samples", type=int, default=1000, help="subnets in the table")
    p.add_argument("--seed", type=int, default=0, help="seed the subnets are drawn from")
    p.add_argument("--val-images", type=int, default=5000, help="held-out images each subnet is evaluated on")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes measuring at once, one torch thread each (not under torchrun: start more ranks)",
    )
    p.set_defaults(func=_cmd_accuracy_build)

    p = add_command(asub, "fit", "train the accuracy predictor on a table")
    p.add_argument("table", type=Path, metavar="TABLE.jsonl", help="accuracy table (from accuracy build)")
    p.add_argument("--out", required=True, type=Path, help="predictor file to write")
    p.add_argument(
        "--supernet",
        metavar="ID|ENTRY.toml",
        help="the table's supernet (default: the id its header records; your own: its entry file)",
    )
    p.add_argument("--epochs", type=int, default=200, help="training epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/held-out split and the weights")
    p.add_argument(
        "--plot", metavar="FILE.png", help="plot predicted vs measured top-1 on the held-out subnets"
    )
    p.set_defaults(func=_cmd_accuracy_fit)
