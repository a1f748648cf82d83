"""``ofa-edge`` entry point: parse arguments, call the API, render results and errors.

Errors derived from ``OfaEdgeError`` print as one line on stderr (exit 1); ``--json`` puts one
versioned document on stdout. ``OFA_EDGE_DEBUG=1`` shows tracebacks instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ofa_edge import __version__
from ofa_edge.cli.common import (
    DEFAULT_SUPERNET,
    add_subnet_args,
    chosen_subnet,
    parse_resolutions,
    select_devices,
)
from ofa_edge.cli.output import Output
from ofa_edge.errors import ConfigError, OfaEdgeError
from ofa_edge.lut.table import PASSES
from ofa_edge.supernet.space import ArchConfig

#: Modules under ofa_edge.cli that add their own subcommands with ``register(sub, common)``.
COMMAND_MODULES: tuple[str, ...] = ("accuracy", "search", "export", "deploy")


def _cmd_supernets(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.supernet.registry import list_supernets

    infos = list_supernets()
    lines = [f"{i.name:36s} {i.description}" for i in infos]
    out.result(
        "supernets",
        {"supernets": [{"name": i.name, "description": i.description, "url": i.url} for i in infos]},
        "\n".join(lines),
    )
    return 0


def _cmd_count(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.supernet.counting import count
    from ofa_edge.supernet.registry import get_supernet_info

    net = get_supernet_info(args.supernet).build()
    arch = chosen_subnet(args, net.space)
    c = count(net.spec, arch)
    out.result(
        "count",
        {"supernet": args.supernet, "arch": arch.to_dict(), "macs": c.macs, "params": c.params},
        f"{args.supernet} @ {arch.r}px: {c.macs / 1e6:.1f}M MACs, {c.params / 1e6:.2f}M params",
    )
    return 0


def _cmd_train(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.data import load_split
    from ofa_edge.training import RECIPES, Trainer

    if args.recipe not in RECIPES:
        from ofa_edge.errors import UnknownName

        raise UnknownName("recipe", args.recipe, list(RECIPES))
    config = RECIPES[args.recipe]()
    trainer = Trainer(
        config,
        load_split(args.data, "train"),
        Path(args.out),
        checkpoint_minutes=args.checkpoint_minutes,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    finished = trainer.run(None if args.hours is None else args.hours * 3600)
    state = trainer.state
    out.result(
        "train",
        {
            "finished": finished,
            "run_dir": str(Path(args.out).resolve()),
            "log": state.log,
            "train_seconds": state.train_seconds,
        },
        f"{'finished' if finished else 'paused (run the same command to resume)'}: "
        f"{len(state.log)} epochs logged, {state.train_seconds / 3600:.2f} h, checkpoint in {args.out}",
    )
    return 0


def _cmd_release(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.training.release import release_weights

    made = release_weights(args.run, args.out, supernet=args.supernet, allow_unfinished=args.allow_unfinished)
    out.result(
        "release",
        {"path": str(made.path), "sha256": made.sha256, "bytes": made.size_bytes, "supernet": args.supernet},
        f"{made.path}: {made.size_bytes / 1e6:.2f} MB fp16, sha256 {made.sha256}",
    )
    return 0


def _cmd_devices_list(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.devices.inventory import load_inventory

    devices = load_inventory(args.inventory)

    def where(d) -> str:
        if d.ssh:
            return f"{d.ssh.user + '@' if d.ssh.user else ''}{d.ssh.host}:{d.ssh.port}"
        if d.adb:
            return f"adb {d.adb.serial or '(only device)'}"
        return "this machine"

    out.result(
        "devices",
        {
            "devices": [
                {
                    "name": d.name,
                    "transport": d.transport,
                    "address": where(d),
                    "runtime": d.runtime,
                    "threads": d.threads,
                }
                for d in devices.values()
            ]
        },
        "\n".join(
            f"{d.name:16s} {d.transport:6s} {where(d):28s} {d.runtime} x{d.threads}" for d in devices.values()
        ),
    )
    return 0


def _cmd_devices_check(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.devices.fleet import check_devices

    specs = select_devices(args, args.names)
    status = None if out.json_mode else (lambda n, m: print(f"{n}: {m}", file=sys.stderr, flush=True))
    results = check_devices(specs, status)
    failed = {n: r for n, r in results.items() if isinstance(r, OfaEdgeError)}
    lines = [f"{n}: {'FAILED: ' + str(r) if n in failed else 'ok'}" for n, r in results.items()]
    out.result(
        "devices-check",
        {
            "devices": {
                n: (
                    {"ok": False, "error": str(r), "reference": r.reference}
                    if isinstance(r, OfaEdgeError)
                    else {"ok": True, "fingerprint": r}
                )
                for n, r in results.items()
            }
        },
        "\n".join(lines),
    )
    return 1 if failed else 0


def _cmd_devices_trust(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.devices.ssh import host_key_fingerprint, trust_host

    (spec,) = select_devices(args, [args.name])
    if spec.ssh is None:
        raise ConfigError(f"device {spec.name!r} uses {spec.transport}: only SSH devices have host keys")
    key_type, fingerprint = host_key_fingerprint(spec)
    if args.fingerprint and args.fingerprint != fingerprint:
        raise ConfigError(
            f"{spec.name} offers {key_type} {fingerprint}, not the expected {args.fingerprint}",
            hint="do not trust it; check the device's key out of band",
        )
    trust_host(spec)
    out.result(
        "devices-trust",
        {
            "device": spec.name,
            "key_type": key_type,
            "fingerprint": fingerprint,
            "known_hosts": str(spec.ssh.known_hosts),
        },
        f"{spec.name}: trusted {key_type} {fingerprint} (recorded in {spec.ssh.known_hosts})",
    )
    return 0


def _cmd_bench(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.devices.agent import open_session

    (spec,) = select_devices(args, [args.device])
    model = Path(args.model)
    if not model.is_file():
        raise ConfigError(f"model {model} does not exist")
    runtime = {".onnx": "onnxruntime", ".tflite": "tflite"}.get(model.suffix)
    if runtime is None:
        raise ConfigError(f"{model}: unknown model format", hint="use a .onnx or .tflite file")
    with open_session(spec) as session:
        report = session.bench([model], runtime=runtime, threads=args.threads, min_runs=args.runs)
    (r,) = report.results
    if r.error:
        from ofa_edge.devices.agent import AgentError

        raise AgentError(f"{spec.name}: {model.name}: {r.error}")
    out.result(
        "bench",
        {
            "device": spec.name,
            "model": str(model),
            "runtime": runtime,
            "threads": args.threads or spec.threads,
            "median_ms": r.median_ms,
            "p10_ms": r.p10_ms,
            "p90_ms": r.p90_ms,
            "runs": r.runs,
            "samples_ms": list(r.samples_ms),
            "conditions_before": report.conditions_before,
            "conditions_after": report.conditions_after,
        },
        f"{spec.name} {model.name} ({runtime}, {args.threads or spec.threads} thread(s)): "
        f"median {r.median_ms:.3f} ms"
        + (
            f", p10 {r.p10_ms:.3f}, p90 {r.p90_ms:.3f}"
            if r.p10_ms is not None and r.p90_ms is not None
            else ""
        )
        + f" over {r.runs} runs",
    )
    return 0


def _cmd_lut_build(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.devices.agent import open_session
    from ofa_edge.lut.build import build_table
    from ofa_edge.lut.store import new_table_path
    from ofa_edge.supernet.registry import describe_supernet

    (spec,) = select_devices(args, [args.device])
    resolutions = parse_resolutions(args.resolutions) or []
    supernet = describe_supernet(args.supernet)
    threads = args.threads or spec.threads
    path = Path(args.out or new_table_path(spec.name, args.supernet, args.precision, threads))
    with open_session(spec) as session:
        table = build_table(
            session,
            supernet,
            resolutions,
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
    from ofa_edge.devices.agent import open_session
    from ofa_edge.lut.store import find_table
    from ofa_edge.lut.table import describe_calibration
    from ofa_edge.lut.validate import validate

    (spec,) = select_devices(args, [args.device])
    threads = args.threads or spec.threads
    path = (
        Path(args.lut)
        if args.lut
        else find_table(spec.name, args.supernet, precision=args.precision, threads=threads)
    )
    if not path.is_file():
        raise ConfigError(f"no latency table at {path}", hint="check the --lut path")
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
    before, after, cal = report["uncalibrated"], report["calibrated"], report["calibration"]
    text = (
        f"{spec.name}: {report['subnets']} subnets measured whole; calibration fitted on "
        f"{report['fitted_on']} ({describe_calibration(cal)}), "
        f"{report['held_out']} held out\n"
        f"  uncalibrated: {100 * before['within_10pct']:.0f}% within ±10%, MAPE {before['mape_pct']:.1f}%, "
        f"Spearman {before['spearman']:.3f}\n"
        f"  calibrated:   {100 * after['within_10pct']:.0f}% within ±10%, MAPE {after['mape_pct']:.1f}%, "
        f"Spearman {after['spearman']:.3f}\n"
        f"calibration stored in {path}" + (f"; plot: {report['plot']}" if "plot" in report else "")
    )
    out.result("lut-validate", {"table": str(path), **report}, text)
    return 0


def _cmd_lut_import(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.lut import import_ofa
    from ofa_edge.supernet.registry import describe_supernet

    table = import_ofa(args.folder, describe_supernet(args.supernet), device_name=args.device)
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
            "device": table.device.get("name"),
            "runtime": table.runtime,
            "precision": table.precision,
            "threads": table.threads,
        },
        f"{predicted:.3f} ms predicted on {table.device.get('name')} "
        f"({table.runtime.get('name')}, {table.precision}, {table.threads} thread(s))"
        + ("" if table.calibration else ", uncalibrated op sum"),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON document on stdout"
    )
    common.add_argument(
        "--inventory",
        default=argparse.SUPPRESS,
        help="device inventory (default: $OFA_EDGE_INVENTORY, else ./devices.toml)",
    )
    parser = argparse.ArgumentParser(
        prog="ofa-edge",
        description="Specialize once-for-all supernets for your devices.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"ofa-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("supernets", parents=[common], help="list the registered supernets")
    p.set_defaults(func=_cmd_supernets)

    p = sub.add_parser("count", parents=[common], help="MACs and params of a subnet")
    p.add_argument("--supernet", default=DEFAULT_SUPERNET)
    add_subnet_args(p)
    p.set_defaults(func=_cmd_count)

    devices = sub.add_parser("devices", parents=[common], help="the device fleet")
    dsub = devices.add_subparsers(dest="devices_command", required=True)
    p = dsub.add_parser("list", parents=[common], help="devices in the inventory")
    p.set_defaults(func=_cmd_devices_list)
    p = dsub.add_parser("check", parents=[common], help="connect, deploy the agent, fingerprint")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true", help="every device, concurrently")
    p.set_defaults(func=_cmd_devices_check)
    p = dsub.add_parser("trust", parents=[common], help="record an SSH device's host key")
    p.add_argument("name")
    p.add_argument("--fingerprint", help="refuse unless the key has this SHA256 fingerprint")
    p.set_defaults(func=_cmd_devices_trust)

    p = sub.add_parser("bench", parents=[common], help="measure a model file on a device")
    p.add_argument("device")
    p.add_argument("model", help="MODEL.onnx or MODEL.tflite")
    p.add_argument("--threads", type=int)
    p.add_argument("--runs", type=int, default=50, help="minimum timed runs")
    p.set_defaults(func=_cmd_bench)

    lut = sub.add_parser("lut", parents=[common], help="latency lookup tables")
    lsub = lut.add_subparsers(dest="lut_command", required=True)
    p = lsub.add_parser("build", parents=[common], help="measure every op of a supernet on a device")
    p.add_argument("device")
    p.add_argument("--supernet", default=DEFAULT_SUPERNET)
    p.add_argument("--resolutions", default="160,176,192,208,224")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    p.add_argument("--threads", type=int)
    p.add_argument("--out", help="table file (resumed if it exists)")
    p.add_argument(
        "--passes", type=int, default=PASSES, help="measure every op this many times; the median is kept"
    )
    p.set_defaults(func=_cmd_lut_build)
    p = lsub.add_parser("validate", parents=[common], help="calibrate a table on whole subnets")
    p.add_argument("device")
    p.add_argument("--lut", help="table file (default: lut build's default name)")
    p.add_argument("--supernet", default=DEFAULT_SUPERNET, help="names the default table file")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="names the default table")
    p.add_argument("--threads", type=int, help="names the default table (default: the device's threads)")
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", help="write a predicted-vs-measured scatter plot (PNG)")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds per subnet (median taken)")
    p.add_argument("--fit", type=int, default=20, help="subnets the calibration is fitted on")
    p.set_defaults(func=_cmd_lut_validate)
    p = lsub.add_parser("import-ofa", parents=[common], help="convert MIT's YAML tables")
    p.add_argument("folder", help="folder with <resolution>_lookup_table.yaml files")
    p.add_argument("--supernet", required=True)
    p.add_argument("--device", default="imported", help="device name to record")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_cmd_lut_import)
    p = lsub.add_parser("predict", parents=[common], help="predicted latency of a subnet")
    p.add_argument("table", type=Path)
    p.add_argument("--arch", required=True)
    p.set_defaults(func=_cmd_lut_predict)

    p = sub.add_parser("train", parents=[common], help="train a supernet (progressive shrinking)")
    p.add_argument("--data", required=True, help="ImageFolder dir or .tar.gz with train/<class>/")
    p.add_argument("--out", required=True, help="run folder (resumes if it holds a checkpoint)")
    p.add_argument("--recipe", default="cifar10-default")
    p.add_argument("--hours", type=float, help="pause (checkpointed) after this long")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("release", parents=[common], help="a finished training run's weights as fp16")
    p.add_argument("run", help="the run folder of ofa-edge train (or its checkpoint.pt)")
    p.add_argument("--out", required=True, help="weights file to write")
    p.add_argument("--supernet", default=DEFAULT_SUPERNET, help="registry entry the weights are for")
    p.add_argument("--allow-unfinished", action="store_true", help="release a run still training")
    p.set_defaults(func=_cmd_release)

    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"ofa_edge.cli.{name}").register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.inventory = getattr(args, "inventory", None)
    out = Output(json_mode=getattr(args, "json", False))
    try:
        return args.func(args, out)
    except OfaEdgeError as err:
        if os.environ.get("OFA_EDGE_DEBUG"):
            raise
        out.error(err)
        return 1
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
