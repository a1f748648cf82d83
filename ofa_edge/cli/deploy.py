"""``ofa-edge push``: a model file to a device, checked there, measured, recorded."""

from __future__ import annotations

import argparse
from pathlib import Path

from ofa_edge.cli.common import select_devices
from ofa_edge.cli.output import Output


def _cmd_push(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.deploy.push import export_record, push
    from ofa_edge.devices.agent import open_session
    from ofa_edge.lut.table import LatencyTable, LutError
    from ofa_edge.search.tables import find_table

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


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``push`` to the CLI."""
    p = sub.add_parser("push", parents=[common], help="push a model to a device, check and measure it")
    p.add_argument("device")
    p.add_argument("model", help="MODEL.onnx or MODEL.tflite (its export record is read if beside it)")
    p.add_argument("--verify", action="store_true", help="measure it there and compare with the table")
    p.add_argument("--lut", help="latency table to compare with (default: the device's table)")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds when comparing with a table")
    p.add_argument("--manifest", help="deployment manifest path (default: MODEL.deployment.json)")
    p.set_defaults(func=_cmd_push)
