"""``ofa-edge lut build|validate|import-ofa|predict``: latency lookup tables, measured on a device
or converted from MIT's, and the latency they predict."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ofa_edge.cli.common import (
    add_command,
    add_device,
    add_device_threads,
    add_group,
    add_precision,
    add_supernet,
    parse_resolutions,
    select_devices,
)
from ofa_edge.cli.output import Output
from ofa_edge.errors import ConfigError
from ofa_edge.lut.table import PASSES


def _cmd_lut_build(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.devices.sessions import open_session
    from ofa_edge.lut.build import build_table
    from ofa_edge.lut.store import new_table_path
    from ofa_edge.lut.table import SupernetRef

    (spec,) = select_devices(args, [args.device])
    threads = args.threads or spec.threads
    path = Path(args.out or new_table_path(spec.name, args.supernet, args.precision, threads))
    with open_session(spec) as session:
        table = build_table(
            session,
            SupernetRef.named(args.supernet),
            parse_resolutions(args.resolutions),
            path,
            precision=args.precision,
            threads=threads,
            passes=args.passes,
            progress=out.counter(f"lut {spec.name}", "op"),
            exporting=out.counter("export", "model"),
        )
    n = len({k for section in table.entries.values() for k in section})
    out.result(
        "lut-build",
        {"out": str(path), "device": spec.name, "ops": n, "resolutions": table.resolutions},
        f"{n} ops measured on {spec.name} at {table.resolutions} -> {path}",
    )
    return 0


def _cmd_lut_validate(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.devices.sessions import open_session
    from ofa_edge.lut.store import locate_table
    from ofa_edge.lut.table import describe_calibration
    from ofa_edge.lut.validate import validate

    (spec,) = select_devices(args, [args.device])
    threads = args.threads or spec.threads
    path = locate_table(args.lut, spec.name, args.supernet, precision=args.precision, threads=threads)
    with open_session(spec) as session:
        report = validate(
            session,
            path,
            samples=args.samples,
            seed=args.seed,
            plot=Path(args.plot) if args.plot else None,
            rounds=args.rounds,
            fit=args.fit,
            progress=out.counter(f"validate {spec.name}", "subnet"),
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
    out.result("lut-validate", {"table": str(path), **report.to_dict()}, text)
    return 0


def _cmd_lut_import(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.lut import import_ofa
    from ofa_edge.lut.store import OFA_TABLES, ofa_tables
    from ofa_edge.lut.table import SupernetRef

    folder, supernet = Path(args.folder), args.supernet
    named = None if folder.is_dir() else ofa_tables(args.folder)
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
    from ofa_edge.supernet.space import ArchConfig

    table = LatencyTable.load(args.table)
    arch = ArchConfig.load(args.arch)
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
    """Add ``lut build``, ``lut validate``, ``lut import-ofa`` and ``lut predict``."""
    lsub = add_group(sub, "lut", "latency lookup tables")
    p = add_command(lsub, "build", "measure every op of a supernet on a device (resumes)", devices=True)
    add_device(p)
    add_supernet(p)
    p.add_argument(
        "--resolutions",
        metavar="R,R,...",
        help="resolutions to measure, e.g. 24,32 (default: all of the supernet's)",
    )
    add_precision(p, "precision of the op models measured")
    add_device_threads(p, "threads the ops run with on the device (default: the device's)")
    p.add_argument("--out", help="table file, resumed if it exists (default: the table store's name for it)")
    p.add_argument(
        "--passes", type=int, default=PASSES, help="measure every op this many times; the median is kept"
    )
    p.set_defaults(func=_cmd_lut_build)

    p = add_command(lsub, "validate", "measure random subnets whole and calibrate a table", devices=True)
    add_device(p)
    p.add_argument("--lut", metavar="PATH", help="table file (default: the device's table, found by name)")
    add_supernet(p, "supernet of the default table")
    add_precision(p, "precision of the default table")
    add_device_threads(p, "device threads of the default table (default: the device's)")
    p.add_argument("--samples", type=int, default=50, help="random subnets measured whole")
    p.add_argument("--seed", type=int, default=0, help="seed the subnets are drawn from")
    p.add_argument("--plot", metavar="FILE.png", help="write a predicted-vs-measured scatter plot")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds per subnet (median taken)")
    p.add_argument(
        "--fit", type=int, default=20, help="subnets the calibration is fitted on (the rest held out)"
    )
    p.set_defaults(func=_cmd_lut_validate)

    p = add_command(lsub, "import-ofa", "convert MIT's <r>_lookup_table.yaml files")
    p.add_argument(
        "folder",
        metavar="DIR|NAME",
        help="folder with <resolution>_lookup_table.yaml files, or MIT's tables by name (shipped): note10",
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
    p.add_argument("--arch", required=True, metavar="ARCH.json", help="arch JSON file ({ks, e, d, r})")
    p.set_defaults(func=_cmd_lut_predict)
