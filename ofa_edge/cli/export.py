"""``ofa-edge export``: one subnet (or one of MIT's specialized nets) to a checked ONNX or TFLite
file, fp32 or int8."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ofa_edge.cli.common import (
    ARCH_HELP,
    add_command,
    add_host_threads,
    add_precision,
    add_supernet,
    set_host_threads,
)
from ofa_edge.cli.output import Output


def _cmd_export(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.errors import ConfigError
    from ofa_edge.export.check import export_model, export_subnet
    from ofa_edge.export.images import default_calibration, load_images
    from ofa_edge.supernet.registry import get_supernet_info, load_supernet
    from ofa_edge.supernet.specialized import PREPROCESSING, load_specialized

    if (args.arch is None) == (args.specialized is None):
        raise ConfigError(
            "export takes a subnet's ARCH.json or --specialized ID|DIR (one of MIT's specialized nets)",
            hint="give exactly one of them",
        )
    if args.specialized is not None and args.checkpoint is not None:
        raise ConfigError(
            "--checkpoint names supernet weights; a specialized net's weights are its init file",
            hint="pass --specialized DIR, the folder holding its net.config, run.config and init",
        )
    set_host_threads(args)
    if args.specialized is not None:
        net = load_specialized(args.specialized, pretrained=not args.random_weights)
        resolution = net.image_size
    else:
        info = get_supernet_info(args.supernet)
        arch = info.spec.load_arch(args.arch)  # a bad file fails before the weights load
        if args.random_weights:
            supernet = info.build().eval()
        else:
            supernet = load_supernet(args.supernet, checkpoint=args.checkpoint)
        resolution = arch.r
    calib_path = default_calibration() if args.calib_default or not args.calib else Path(args.calib)
    calib, _ = load_images(calib_path, args.calib_images, "train", resolution)
    val = labels = None
    if args.val:
        val, labels = load_images(args.val, args.val_images, "test", resolution)
        if args.random_weights:
            labels = None  # untrained accuracy means nothing: agreement is reported instead
    checks: dict[str, Any] = {
        "val_images": val,
        "val_labels": labels,
        **({} if args.fp32_tolerance is None else {"fp32_tolerance": args.fp32_tolerance}),
        "max_top1_drop": args.max_drop,
        "min_agreement": None if args.min_agreement is None else args.min_agreement / 100,
    }
    if args.specialized is not None:  # fine-tuned with its own BN statistics: exported as it is
        report = export_model(
            net, resolution, args.format, args.precision, calib, args.out, preprocessing=PREPROCESSING,
            specialized=str(args.specialized), **checks,
        )  # fmt: skip
    else:
        report = export_subnet(
            supernet, args.supernet, arch, args.format, args.precision, calib, args.out, **checks
        )
    lines = [
        f"{report.path}: {report.format} {report.precision}, {report.size_bytes / 1e6:.2f} MB, "
        f"input {'x'.join(map(str, report.input_shape))}, sha256 {report.sha256[:16]}...",
        f"  fp32 vs torch: max |diff| {report.fp32_max_abs_diff:.2e} (tolerance {report.fp32_tolerance:g})",
    ]
    if report.agreement is not None:
        line = (
            f"  {report.precision} vs fp32 on {report.check_images} images: top-1 agreement "
            f"{100 * report.agreement:.1f}%, logit SNR {report.logit_snr_db:.1f} dB"
        )
        if report.top1_drop is not None:
            line += (
                f"; top-1 {report.top1:.2f}% vs fp32 {report.fp32_top1:.2f}% "
                f"(drop {report.top1_drop:.2f} points)"
            )
        lines.append(line)
    lines.append("  " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in report.timings.items()))
    out.result("export", report.to_dict(), "\n".join(lines))
    return 0


def register(sub: Any) -> None:
    """Add ``ofa-edge export``."""
    p = add_command(
        sub, "export", "export a subnet to ONNX or TFLite (fp32/fp16/int8), checked before it is written"
    )
    p.add_argument("arch", metavar="ARCH.json", nargs="?", help=ARCH_HELP)
    p.add_argument(
        "--specialized",
        metavar="ID|DIR",
        help="instead of ARCH.json: one of MIT's specialized nets (`ofa-edge supernets --specialized`), "
        "or a folder holding MIT's net.config, run.config and init",
    )
    add_supernet(p)
    p.add_argument("--format", required=True, choices=["onnx", "tflite"], help="model file format")
    add_precision(p, "fp32, fp16 weights, or static int8 (ONNX QDQ / full-integer TFLite)")
    calib = p.add_mutually_exclusive_group()
    calib.add_argument(
        "--calib",
        help="calibration images: .npz, ImageFolder (folder or .tar.gz, train/) or image folder "
        "(default: the shipped CIFAR-10 set)",
    )
    calib.add_argument("--calib-default", action="store_true", help="the calibration images shipped")
    p.add_argument("--calib-images", type=int, default=256, help="at most this many calibration images")
    p.add_argument("--val", help="labelled validation images (.npz with labels, or ImageFolder with test/)")
    p.add_argument("--val-images", type=int, default=1000, help="at most this many validation images")
    p.add_argument("--max-drop", type=float, default=1.0, help="allowed fp16/int8 top-1 drop (points)")
    p.add_argument(
        "--min-agreement",
        type=float,
        help="required fp16/int8 agreement with fp32's top-1 (%%) (default: not checked)",
    )
    p.add_argument("--fp32-tolerance", type=float, help="max |model - torch| on logits (default 1e-3)")
    add_host_threads(p)
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", help="supernet weights file (default: the registry's)")
    weights.add_argument(
        "--random-weights", action="store_true", help="untrained weights (latency previews; int8 not judged)"
    )
    p.add_argument("--out", required=True, help="output file (.onnx or .tflite)")
    p.set_defaults(func=_cmd_export)
