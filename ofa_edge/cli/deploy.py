"""``ofa-edge push``, ``specialize`` and ``demo``: a model file to a device, checked there,
measured, recorded."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

from ofa_edge.cli.common import DEFAULT_SUPERNET, parse_resolutions, select_devices
from ofa_edge.cli.output import Output
from ofa_edge.lut.table import PASSES


def _cmd_push(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.deploy.push import export_record, push
    from ofa_edge.devices.agent import open_session
    from ofa_edge.lut.store import find_table
    from ofa_edge.lut.table import LatencyTable, LutError

    (spec,) = select_devices(args, [args.device])
    model = Path(args.model)
    record = export_record(model) if model.is_file() else None
    table_path: Path | None = Path(args.lut) if args.lut else None
    if table_path is None and args.verify and record and record.get("supernet"):
        try:
            table_path = find_table(
                spec.name, record["supernet"], precision=record.get("precision", "fp32"), threads=spec.threads
            )
        except LutError:
            table_path = None  # measured without a prediction to compare with; the text says so
    table = LatencyTable.load(table_path) if table_path else None
    with open_session(spec) as session:
        doc = push(
            session,
            model,
            table=table,
            table_path=table_path,
            record=record,
            verify=args.verify,
            rounds=args.rounds,
            manifest=Path(args.manifest) if args.manifest else None,
        )
    file = doc["file"]
    lines = [f"{model.name} -> {spec.name}:{file['remote']} (sha256 {file['sha256'][:12]}... checked there)"]
    if args.verify:
        lines.append(f"measured {doc['measured_ms']:.2f} ms")
        if doc["predicted_ms"] is None:
            lines.append("no latency table for this device, runtime and precision: nothing to compare with")
        else:
            verdict = "MISSED by more than 10 %" if doc["flagged"] else "within 10 %"
            lines[-1] += f", predicted {doc['predicted_ms']:.2f} ms ({doc['miss_pct']:+.1f} %, {verdict})"
    lines.append(f"manifest: {doc['manifest']}")
    out.result("push", doc, "\n".join(lines))
    return 0


def stage_printer(out: Output) -> tuple:
    """``stage(name, message)`` lines and per-stage progress bars with ETA (quiet under --json)."""

    def stage(name: str, message: str) -> None:
        if not out.json_mode:
            print(f"[{name}] {message}", file=sys.stderr, flush=True)

    def progress(name: str) -> Callable[[int, int], None]:
        return out.counter(f"  {name}", "model")

    return stage, progress


def specialize_text(doc: dict) -> str:
    """The end of a specialize run, for people: what was chosen, how it ran, where it is."""
    search, dep, cost = doc["search"], doc["deployment"], doc["cost"]
    out_dir = Path(doc["summary_file"]).parent
    lines = [
        f"{doc['device']}: {doc['supernet']} subnet for a {search['budget_ms']:.2f} ms budget "
        f"(reachable {search['reachable_ms'][0]:.2f}-{search['reachable_ms'][1]:.2f} ms)",
        f"  predicted top-1 {search['predicted_top1']:.4g}, r={search['arch']['r']}",
        f"  measured there {dep['measured_ms']:.2f} ms vs predicted {dep['predicted_ms']:.2f} ms "
        f"({dep['miss_pct']:+.1f} %{', MISSED by more than 10 %' if dep['flagged'] else ''})",
        f"  cost: {cost['device_seconds']:.0f} device-s, {cost['host_cpu_seconds']:.0f} host CPU-s, "
        f"~{cost['energy_wh']:.3f} Wh (assumptions in the summary)",
        f"model:    {dep['file']['local']}",
        f"manifest: {dep['manifest']}",
        f"plots:    {out_dir / 'pareto.png'}"
        + (f", {out_dir / 'latency_fit.png'}" if (out_dir / "latency_fit.png").is_file() else ""),
        f"summary:  {doc['summary_file']}",
    ]
    return "\n".join(lines)


def _cmd_specialize(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.deploy.specialize import specialize

    (spec,) = select_devices(args, [args.device])
    if args.threads:
        spec = dataclasses.replace(spec, threads=args.threads)
    stage, progress = stage_printer(out)
    doc = specialize(
        spec,
        Path(args.out),
        supernet=args.supernet,
        latency_ms=args.latency_ms,
        fmt=args.format,
        int8=args.int8,
        resolutions=parse_resolutions(args.resolutions),
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        predictor=Path(args.predictor) if args.predictor else None,
        calib=Path(args.calib) if args.calib else None,
        passes=args.passes,
        seed=args.seed,
        stage=stage,
        progress=progress,
    )
    out.result("specialize", doc, specialize_text(doc))
    return 0


def add_specialize_args(p: argparse.ArgumentParser, supernet: str) -> None:
    """Options shared by ``specialize`` and ``demo``."""
    p.add_argument("--latency-ms", type=float, help="budget (default: the middle of the reachable range)")
    p.add_argument("--supernet", default=supernet)
    p.add_argument("--format", default="onnx", choices=["onnx", "tflite"])
    p.add_argument("--int8", action="store_true", help="int8 model and int8 latency table")
    p.add_argument("--resolutions", help="table resolutions, e.g. 24,32,40 (default: all of the supernet's)")
    p.add_argument("--threads", type=int, help="override the device's thread count")
    p.add_argument("--passes", type=int, default=PASSES, help="times the table measures every op")
    p.add_argument("--checkpoint", help="supernet weights (default: the registry's)")
    p.add_argument("--predictor", help="accuracy predictor (default: the one shipped for the supernet)")
    p.add_argument("--calib", help="calibration images (default: the shipped CIFAR-10 set)")
    p.add_argument("--seed", type=int, default=0)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``specialize``, ``demo`` (``specialize`` on ``local``) and ``push`` to the CLI."""
    p = sub.add_parser(
        "specialize", parents=[common], help="table, search, export, push and verify for a device"
    )
    p.add_argument("device")
    p.add_argument("--out", default="ofa-edge-out", help="folder for the table, model, manifest and plots")
    add_specialize_args(p, DEFAULT_SUPERNET)
    p.set_defaults(func=_cmd_specialize)

    p = sub.add_parser(
        "demo", parents=[common], help="the embedded default job, offline: specialize for this machine"
    )
    p.add_argument("--out", default="ofa-edge-demo", help="folder for the table, model, manifest and plots")
    add_specialize_args(p, DEFAULT_SUPERNET)
    p.set_defaults(func=_cmd_specialize, device="local")

    p = sub.add_parser("push", parents=[common], help="push a model to a device, check and measure it")
    p.add_argument("device")
    p.add_argument("model", help="MODEL.onnx or MODEL.tflite (its export record is read if beside it)")
    p.add_argument("--verify", action="store_true", help="measure it there and compare with the table")
    p.add_argument("--lut", help="latency table to compare with (default: the device's table)")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds when comparing with a table")
    p.add_argument("--manifest", help="deployment manifest path (default: MODEL.deployment.json)")
    p.set_defaults(func=_cmd_push)
