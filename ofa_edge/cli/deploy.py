"""``ofa-edge push``, ``specialize`` and ``demo``: a model file to a device, checked there,
measured, recorded."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofa_edge.cli.common import (
    add_command,
    add_device_threads,
    add_devices,
    add_objective,
    add_precision,
    add_supernet,
    parse_resolutions,
    several_devices,
)
from ofa_edge.cli.fleet import DeviceRun, device_path, run_devices
from ofa_edge.cli.output import Output, Progress
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.lut.table import PASSES

if TYPE_CHECKING:
    from ofa_edge.deploy.specialize import Specialization


def _cmd_push(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.export.record import export_record

    model = Path(args.model)
    record = export_record(model) if model.is_file() else None
    several = several_devices(args)
    return run_devices(args, out, "push", lambda spec, progress: _push(args, spec, model, record, several))


def _push(
    args: argparse.Namespace, spec: DeviceSpec, model: Path, record: dict[str, Any] | None, several: bool
) -> DeviceRun:
    """``model`` pushed to one device, checked there, and (``--verify``) measured."""
    from ofa_edge.deploy.push import default_manifest, push, record_table
    from ofa_edge.devices.sessions import open_session
    from ofa_edge.lut.table import LatencyTable

    table_path = (
        device_path(Path(args.lut), spec.name, several)
        if args.lut
        else record_table(spec, record)
        if args.verify
        else None
    )
    table = LatencyTable.load(table_path) if table_path else None
    manifest = Path(args.manifest) if args.manifest else default_manifest(model)
    with open_session(spec) as session:
        dep = push(
            session,
            model,
            table=table,
            table_path=table_path,
            record=record,
            verify=args.verify,
            rounds=args.rounds,
            manifest=device_path(manifest, spec.name, several),
        )
    lines = [
        f"{model.name} -> {spec.name}:{dep.file.remote} (sha256 {dep.file.sha256[:12]}... checked there)"
    ]
    if args.verify:
        lines.append(f"measured {dep.measured_ms:.2f} ms")
        if dep.predicted_ms is None:
            lines.append("no latency table for this device, runtime and precision: nothing to compare with")
        else:
            verdict = "MISSED by more than 10 %" if dep.flagged else "within 10 %"
            lines[-1] += f", predicted {dep.predicted_ms:.2f} ms ({dep.miss_pct:+.1f} %, {verdict})"
    if dep.outputs is not None:
        o = dep.outputs
        lines.append(
            f"outputs on {o.images} check images {'match' if o.ok else 'DIFFER from'} this host's "
            f"({o.tolerance}): max difference {o.max_abs_diff:.2g}, same top-1 on {100 * o.agreement:.1f} %, "
            f"top-1 {o.device_top1:.1f} % there vs {o.host_top1:.1f} % here"
        )
    lines.append(f"manifest: {dep.manifest}")
    return DeviceRun(
        dep.to_dict(),
        "\n".join(lines),
        table=dep.table,
        subnet=dep.arch,
        predicted_ms=dep.predicted_ms,
        measured_ms=dep.measured_ms,
    )


def specialize_text(run: Specialization) -> str:
    """The end of a specialize run, for people: what was chosen, how it ran, where it is."""
    choice, dep, cost = run.choice, run.deployment, run.cost
    out_dir = run.summary_file.parent
    low, high = choice.reachable_ms
    lines = [
        f"{run.device}: {run.supernet} subnet for a {choice.budget_ms:.2f} ms budget "
        f"(reachable {low:.2f}-{high:.2f} ms)",
        f"  {choice.score_text}, r={choice.best.arch.r}",
        f"  measured there {dep.measured_ms:.2f} ms vs predicted {dep.predicted_ms:.2f} ms "
        f"({dep.miss_pct:+.1f} %{', MISSED by more than 10 %' if dep.flagged else ''})",
        f"  cost: {cost.device_seconds:.0f} device-s, {cost.host_cpu_seconds:.0f} host CPU-s, "
        f"~{cost.energy_wh:.3f} Wh ("
        + ("device power measured, host's assumed" if cost.measured_device_watts is not None else "estimated")
        + ": assumptions in the summary)",
        f"model:    {dep.file.local}",
        f"manifest: {dep.manifest}",
        f"plots:    {out_dir / 'pareto.png'}"
        + (f", {out_dir / 'latency_fit.png'}" if (out_dir / "latency_fit.png").is_file() else ""),
        f"summary:  {run.summary_file}",
    ]
    return "\n".join(lines)


def _cmd_specialize(args: argparse.Namespace, out: Output) -> int:
    several = several_devices(args)
    return run_devices(
        args, out, "specialize", lambda spec, progress: _specialize(args, spec, several, progress)
    )


def _specialize(args: argparse.Namespace, spec: DeviceSpec, several: bool, progress: Progress) -> DeviceRun:
    """The whole job on one device, in ``--out`` (several devices: its ``DEVICE`` subfolder)."""
    from ofa_edge.deploy.specialize import specialize

    if args.threads:
        spec = dataclasses.replace(spec, threads=args.threads)
    run = specialize(
        spec,
        Path(args.out) / spec.name if several else Path(args.out),
        supernet=args.supernet,
        latency_ms=args.latency_ms,
        fmt=args.format,
        precision=args.precision,
        resolutions=parse_resolutions(args.resolutions),
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        predictor=Path(args.predictor) if args.predictor else None,
        objective=args.objective,
        calib=Path(args.calib) if args.calib else None,
        passes=args.passes,
        seed=args.seed,
        stage=progress.stage,
        progress=lambda name: progress.counter(f"  {name}", "model"),
    )
    dep, cost = run.deployment, run.cost
    return DeviceRun(
        run.to_dict(),
        specialize_text(run),
        table=str(run.table_path),
        subnet=run.choice.best.arch.to_dict(),
        predicted_ms=dep.predicted_ms,
        measured_ms=dep.measured_ms,
        cost=f"{cost.device_seconds:.0f} device-s, {cost.host_cpu_seconds:.0f} host CPU-s, "
        f"~{cost.energy_wh:.3f} Wh",
    )


def add_specialize_args(p: argparse.ArgumentParser) -> None:
    """Options shared by ``specialize`` and ``demo``."""
    p.add_argument("--latency-ms", type=float, help="budget (default: the middle of the reachable range)")
    add_supernet(p)
    p.add_argument("--format", default="onnx", choices=["onnx", "tflite"], help="model file format")
    add_precision(p, "precision of the model and of its latency table")
    p.add_argument(
        "--resolutions",
        metavar="R,R,...",
        help="table resolutions, e.g. 24,32 (default: all of the supernet's)",
    )
    add_device_threads(p, "threads the model runs with on the device (default: the device's)")
    p.add_argument("--passes", type=int, default=PASSES, help="times the table measures every op")
    p.add_argument("--checkpoint", help="supernet weights (default: the registry's)")
    p.add_argument("--predictor", help="accuracy predictor (default: the one shipped for the supernet)")
    add_objective(p)
    p.add_argument("--calib", help="calibration images (default: the shipped CIFAR-10 set)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search and of the table's subnets")


def register(sub: Any) -> None:
    """Add ``specialize``, ``demo`` (``specialize`` on ``local``) and ``push``."""
    p = add_command(
        sub, "specialize", "the whole job for each device: table, search, export, push, verify", devices=True
    )
    add_devices(p)
    p.add_argument(
        "--out",
        default="ofa-edge-out",
        help="folder for the table, model, manifest and plots (several devices: a subfolder each)",
    )
    add_specialize_args(p)
    p.set_defaults(func=_cmd_specialize)

    p = add_command(
        sub, "demo", "the embedded default job, offline: specialize for this machine (local)", devices=True
    )
    p.add_argument("--out", default="ofa-edge-demo", help="folder for the table, model, manifest and plots")
    add_specialize_args(p)
    p.set_defaults(func=_cmd_specialize, names=["local"])

    p = add_command(sub, "push", "push a model to devices, check it there and measure it", devices=True)
    add_devices(p)
    p.add_argument(
        "model", metavar="MODEL", help="MODEL.onnx or MODEL.tflite (its export record is read if beside it)"
    )
    p.add_argument("--verify", action="store_true", help="measure it there and compare with the table")
    p.add_argument(
        "--lut",
        metavar="PATH",
        help="latency table to compare with (several devices: PATH's NAME.DEVICE.EXT each; "
        "default: each device's table)",
    )
    p.add_argument("--rounds", type=int, default=3, help="timing rounds when comparing with a table")
    p.add_argument(
        "--manifest",
        help="deployment manifest path (several devices: its NAME.DEVICE.json each; "
        "default: MODEL.deployment.json)",
    )
    p.set_defaults(func=_cmd_push)
