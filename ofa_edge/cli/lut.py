"""``ofa-edge lut build|adapt|validate|import-ofa|predict``: latency lookup tables, measured on a
device, adapted from another device's, or converted from MIT's, and the latency they predict."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ofa_edge.cli.common import (
    ARCH_HELP,
    add_command,
    add_device_threads,
    add_devices,
    add_group,
    add_precision,
    add_supernet,
    parse_resolutions,
    several_devices,
)
from ofa_edge.cli.fleet import DeviceRun, device_path, run_devices
from ofa_edge.cli.output import Output, Progress
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.errors import ConfigError
from ofa_edge.lut.table import PASSES


def _cmd_lut_build(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.lut.classes import ClassBuilds

    several, classes = several_devices(args), ClassBuilds()  # one class table per class and run
    return run_devices(
        args, out, "lut-build", lambda spec, progress: _build(args, spec, several, progress, classes)
    )


def _build(
    args: argparse.Namespace, spec: DeviceSpec, several: bool, progress: Progress, classes: Any
) -> DeviceRun:
    """The device's table measured (or resumed), or with ``--join-class`` joined from its class's
    table: ``--out``, else its name in the table store."""
    from ofa_edge.devices.sessions import open_session
    from ofa_edge.lut.build import build_table
    from ofa_edge.lut.classes import class_member_table
    from ofa_edge.lut.store import new_table_path
    from ofa_edge.lut.table import SupernetRef

    threads = args.threads or spec.threads
    path = (
        device_path(Path(args.out), spec.name, several)
        if args.out
        else new_table_path(spec.name, args.supernet, args.precision, threads)
    )
    supernet = SupernetRef.named(args.supernet)
    resolutions = parse_resolutions(args.resolutions) or list(supernet.spec.space.resolutions)
    build = {
        "precision": args.precision,
        "threads": threads,
        "passes": args.passes,
        "progress": progress.counter(f"lut {spec.name}", "op"),
        "exporting": progress.counter("export", "model"),
    }
    with open_session(spec) as session:
        if not args.join_class:
            table = build_table(session, supernet, resolutions, path, **build)
            joined = note = mate = None
        else:
            member = class_member_table(
                session,
                supernet,
                resolutions,
                path,
                classes=classes,
                join_samples=args.join_samples,
                joining=progress.counter(f"join {spec.name}", "timing"),
                **build,
            )
            table, joined, note, mate = member.table, member.joined, member.note, member.class_table
    n = len({k for section in table.entries.values() for k in section})
    doc = {"out": str(path), "device": spec.name, "ops": n, "resolutions": table.resolutions}
    if joined is not None and mate is not None:
        doc["joined"] = {"class_table": str(mate), **joined.to_dict()}
        text = (
            f"{spec.name} joined the class table {mate.name}: {joined.samples} subnets measured whole in "
            f"{joined.device_seconds:.0f} s (x {joined.fit.scale:.3f}, leave-one-out error "
            f"{joined.fit.loo_mape_pct:.1f}%) -> {path}"
        )
    else:
        text = f"{n} ops measured on {spec.name} at {table.resolutions} -> {path}"
        if note is not None:
            doc["note"], text = note, f"{note}\n{text}"
    return DeviceRun(doc, text, table=str(path))


def _cmd_lut_adapt(args: argparse.Namespace, out: Output) -> int:
    several = several_devices(args)
    return run_devices(args, out, "lut-adapt", lambda spec, progress: _adapt(args, spec, several, progress))


def _adapt(args: argparse.Namespace, spec: DeviceSpec, several: bool, progress: Progress) -> DeviceRun:
    """The device's table adapted from ``--from``: ``--out``, else its name in the table store."""
    from ofa_edge.devices.sessions import open_session
    from ofa_edge.lut.adapt import adapt
    from ofa_edge.lut.store import new_table_path
    from ofa_edge.lut.table import LatencyTable

    source = LatencyTable.load(args.source)
    path = (
        device_path(Path(args.out), spec.name, several)
        if args.out
        else new_table_path(spec.name, source.supernet.id, source.precision, source.threads)
    )
    with open_session(spec) as session:
        report = adapt(
            session,
            Path(args.source),
            path,
            samples=args.samples,
            held_out=args.held_out,
            rounds=args.rounds,
            seed=args.seed,
            progress=progress.counter(f"adapt {spec.name}", "timing"),
        )
    fit = report.fit
    scales = ", ".join(f"{t} {v / fit.scale:.2f}" for t, v in sorted(fit.type_scales.items()))
    text = (
        f"{spec.name}: {report.samples} subnets measured whole in {report.device_seconds:.0f} s; "
        f"{source.device.name}'s table x {fit.scale:.3f}"
        + (f", per op type (relative): {scales}" if fit.ridge is not None else " (one factor for every op)")
        + ("; whole-network calibration refitted on them" if fit.recalibrated else "")
        + f"; leave-one-out error {fit.loo_mape_pct:.1f}%"
    )
    if report.held_out is not None and report.scale_only_held_out is not None:
        held, uniform = report.held_out, report.scale_only_held_out
        text += (
            f"\n  held out: {100 * held.within_10pct:.0f}% within ±10%, MAPE {held.mape:.1f}%, "
            f"Spearman {held.spearman:.3f} (one factor: {100 * uniform.within_10pct:.0f}%, "
            f"{uniform.mape:.1f}%)"
        )
    if report.note is not None:
        text = f"{report.note}\n{text}"
    return DeviceRun(report.to_dict(), text + f"\n-> {path}", table=str(path))


def _cmd_lut_validate(args: argparse.Namespace, out: Output) -> int:
    several = several_devices(args)
    return run_devices(
        args, out, "lut-validate", lambda spec, progress: _validate(args, spec, several, progress)
    )


def _validate(args: argparse.Namespace, spec: DeviceSpec, several: bool, progress: Progress) -> DeviceRun:
    """The device's table checked against subnets measured whole, and calibrated."""
    from ofa_edge.devices.sessions import open_session
    from ofa_edge.lut.store import locate_table
    from ofa_edge.lut.table import describe_calibration
    from ofa_edge.lut.validate import validate

    threads = args.threads or spec.threads
    lut = device_path(Path(args.lut), spec.name, several) if args.lut else None
    path = locate_table(lut, spec.name, args.supernet, precision=args.precision, threads=threads)
    with open_session(spec) as session:
        report = validate(
            session,
            path,
            samples=args.samples,
            seed=args.seed,
            plot=device_path(Path(args.plot), spec.name, several) if args.plot else None,
            rounds=args.rounds,
            fit=args.fit,
            progress=progress.counter(f"validate {spec.name}", "timing"),
        )
    before, after = report.uncalibrated, report.calibrated
    text = (
        f"{spec.name}: {report.subnets} subnets measured whole; calibration fitted on "
        f"{report.fitted_on} ({describe_calibration(report.calibration)}), "
        f"{report.held_out} held out\n"
        f"  uncalibrated: {100 * before.within_10pct:.0f}% within ±10%, MAPE {before.mape:.1f}%, "
        f"Spearman {before.spearman:.3f}\n"
        f"  calibrated:   {100 * after.within_10pct:.0f}% within ±10%, MAPE {after.mape:.1f}%, "
        f"Spearman {after.spearman:.3f}\n"
        f"calibration stored in {path}" + (f"; plot: {report.plot}" if report.plot else "")
    )
    return DeviceRun({"table": str(path), **report.to_dict()}, text, table=str(path))


def _cmd_lut_import(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.lut import import_ofa
    from ofa_edge.lut.store import OFA_TABLES, ofa_tables
    from ofa_edge.lut.table import SupernetRef

    folder, supernet = Path(args.folder), args.supernet
    named = None if folder.exists() else ofa_tables(args.folder)
    if named is not None:
        folder, supernet = named[0], supernet or named[1]
        if supernet != named[1]:
            raise ConfigError(
                f"MIT's {args.folder} tables were measured for {named[1]}, not {supernet}",
                hint=f"--supernet {named[1]}, or leave it out",
            )
    elif supernet is None:
        raise ConfigError(
            f"--supernet is needed to import the tables in {folder}",
            hint=f"name the supernet they were measured for; MIT's tables by name: {', '.join(OFA_TABLES)}",
        )
    device = args.device_name or (args.folder if named else "imported")
    table = import_ofa(folder, SupernetRef.named(supernet), device_name=device)
    table.save(args.out)
    n = sum(len(section) for section in table.entries.values())
    out.result(
        "lut-import",
        {"out": str(args.out), "entries": n, "resolutions": table.resolutions},
        f"{n} entries at resolutions {table.resolutions} -> {args.out}",
    )
    return 0


def _cmd_lut_predict(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.lut import LatencyTable

    table = LatencyTable.load(args.table)
    arch = table.spec.load_arch(args.arch)
    raw = table.op_sum(arch)
    predicted = table.predict(arch)
    out.result(
        "lut-predict",
        {
            "table": str(args.table),
            "arch": arch.to_dict(),
            "predicted_ms": predicted,
            "op_sum_ms": raw,
            "calibrated": table.calibration is not None,
            "device": table.device.name,
            "runtime": table.runtime.to_dict(),
            "backend": table.backend.to_dict() if table.backend else None,
            "precision": table.precision,
            "threads": table.threads,
        },
        f"{predicted:.3f} ms predicted on {table.device.name} "
        f"({table.runtime.name}, {table.precision}, {table.threads} thread(s))"
        + ("" if table.calibration else ", uncalibrated op sum"),
    )
    return 0


def register(sub: Any) -> None:
    """Add ``lut build``, ``lut adapt``, ``lut validate``, ``lut import-ofa`` and ``lut predict``."""
    lsub = add_group(sub, "lut", "latency lookup tables")
    p = add_command(lsub, "build", "measure every op of a supernet on devices (resumes)", devices=True)
    add_devices(p)
    add_supernet(p)
    p.add_argument(
        "--resolutions",
        metavar="R,R,...",
        help="resolutions to measure, e.g. 24,32 (default: all of the supernet's)",
    )
    add_precision(p, "precision of the op models measured")
    add_device_threads(p, "threads the ops run with on the device (default: the device's)")
    p.add_argument(
        "--out",
        help="table file, resumed if it exists (several devices: OUT's NAME.DEVICE.EXT each; default: "
        "the table store's name for it)",
    )
    p.add_argument(
        "--passes", type=int, default=PASSES, help="measure every op this many times; the median is kept"
    )
    p.add_argument(
        "--join-class",
        action="store_true",
        help="join the table of another device of the same hardware class (on the table search path, "
        "or built first by this run) by measuring --join-samples whole subnets, instead of every op",
    )
    p.add_argument(
        "--join-samples", type=int, default=20, help="whole subnets a device joining its class measures"
    )
    p.set_defaults(func=_cmd_lut_build)

    p = add_command(
        lsub, "adapt", "a table for a device from another device's table and a few subnets", devices=True
    )
    add_devices(p)
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="LUT.json",
        help="the table of another device to adapt",
    )
    p.add_argument("--samples", type=int, default=20, help="subnets measured whole to fit the correction on")
    p.add_argument(
        "--held-out", type=int, default=0, help="more random subnets measured only to report fidelity on"
    )
    p.add_argument("--rounds", type=int, default=3, help="timing rounds per subnet (median taken)")
    p.add_argument("--seed", type=int, default=0, help="seed the subnets are drawn from")
    p.add_argument("--out", help="table file to write (default: the table store's name for it)")
    p.set_defaults(func=_cmd_lut_adapt)

    p = add_command(lsub, "validate", "measure random subnets whole and calibrate a table", devices=True)
    add_devices(p)
    p.add_argument(
        "--lut",
        metavar="PATH",
        help="table file (several devices: PATH's NAME.DEVICE.EXT each; default: each device's table, "
        "found by name)",
    )
    add_supernet(p, "supernet of the default table")
    add_precision(p, "precision of the default table")
    add_device_threads(p, "device threads of the default table (default: the device's)")
    p.add_argument("--samples", type=int, default=50, help="random subnets measured whole")
    p.add_argument("--seed", type=int, default=0, help="seed the subnets are drawn from")
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="write a predicted-vs-measured scatter plot (several devices: FILE.DEVICE.png each)",
    )
    p.add_argument("--rounds", type=int, default=3, help="timing rounds per subnet (median taken)")
    p.add_argument(
        "--fit", type=int, default=20, help="subnets the calibration is fitted on (the rest held out)"
    )
    p.set_defaults(func=_cmd_lut_validate)

    p = add_command(lsub, "import-ofa", "convert MIT's latency tables (YAML)")
    p.add_argument(
        "folder",
        metavar="DIR|FILE|NAME",
        help="folder with <resolution>_lookup_table.yaml files, a legacy ProxylessNAS table "
        "(mobile_trim.yaml), or MIT's tables by name (shipped): note10",
    )
    p.add_argument(
        "--supernet",
        metavar="ID",
        help="supernet registry name the tables were measured for (default for a NAME: its own)",
    )
    p.add_argument(
        "--device-name",
        metavar="NAME",
        help="device label recorded in the table (default: the NAME, else 'imported')",
    )
    p.add_argument("--out", required=True, type=Path, metavar="LUT.json", help="table file to write")
    p.set_defaults(func=_cmd_lut_import)

    p = add_command(lsub, "predict", "predicted latency of a subnet (ms)")
    p.add_argument("table", type=Path, metavar="LUT.json", help="latency table")
    p.add_argument("--arch", required=True, metavar="ARCH.json", help=ARCH_HELP)
    p.set_defaults(func=_cmd_lut_predict)
