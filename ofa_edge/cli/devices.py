"""``ofa-edge devices list|check|trust|unlock`` and ``bench``: the fleet, and a model measured on it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ofa_edge.cli.common import (
    add_command,
    add_device,
    add_device_threads,
    add_devices,
    add_group,
    select_devices,
)
from ofa_edge.cli.fleet import DeviceRun, run_devices
from ofa_edge.cli.output import DeviceLines, Output, Progress
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.errors import AgentError, ConfigError, OfaEdgeError, fleet_exit_code


def _cmd_devices_list(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.devices.inventory import load_inventory
    from ofa_edge.devices.transports import TRANSPORTS

    devices = load_inventory(args.inventory)

    def where(d: DeviceSpec) -> str:
        return TRANSPORTS[d.transport].address(d)

    out.result(
        "devices",
        {
            "devices": [
                {
                    "name": d.name,
                    "transport": d.transport,
                    "address": where(d),
                    "runtime": d.runtime,
                    "backend": d.backend_for().to_dict(),
                    "threads": d.threads,
                    "groups": list(d.groups),
                }
                for d in devices.values()
            ]
        },
        "\n".join(
            f"{d.name:16s} {d.transport:6s} {where(d):28s} {d.backend_for().describe()} x{d.threads}"
            + (f"  groups: {', '.join(d.groups)}" if d.groups else "")
            for d in devices.values()
        ),
    )
    return 0


def _locked(holder: dict[str, Any] | None) -> str:
    """`` (locked by ...)`` for a device whose lock someone holds, else nothing."""
    if holder is None:
        return ""
    return (
        f" (locked by {holder['owner']}, pid {holder['pid']}: `{holder['command']}` since "
        f"{holder['acquired']}, {'expired' if holder['stale'] else 'expires'} {holder['expires']})"
    )


def _cmd_devices_check(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.devices.farm import farm_address
    from ofa_edge.devices.fleet import check_devices

    specs = select_devices(args, args.names)
    lines = DeviceLines([spec.name for spec in specs], out.json_mode)
    try:
        results = check_devices(specs, lines.status, args.jobs, farm_address(args.ray))
    finally:
        lines.close()
    text = [
        f"{n}: FAILED: {r}" if isinstance(r, OfaEdgeError) else f"{n}: ok" + _locked(r["lock"])
        for n, r in results.items()
    ]
    out.result(
        "devices-check",
        {
            "devices": {
                n: (
                    {"ok": False, "error": str(r), "reference": r.reference, "exit_code": r.exit_code}
                    if isinstance(r, OfaEdgeError)
                    else {"ok": True, "fingerprint": r}
                )
                for n, r in results.items()
            }
        },
        "\n".join(text),
    )
    return fleet_exit_code(r for r in results.values() if isinstance(r, OfaEdgeError))


def _cmd_devices_trust(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.devices.ssh import offered_host_key, trust_host

    (spec,) = select_devices(args, [args.device])
    if spec.ssh is None:
        raise ConfigError(f"device {spec.name!r} uses {spec.transport}: only SSH devices have host keys")
    offered = offered_host_key(spec)  # a jump host's first, until each is recorded
    if args.fingerprint and args.fingerprint != offered.fingerprint:
        raise ConfigError(
            f"{spec.name}: {offered.host} offers {offered.key_type} {offered.fingerprint}, "
            f"not the expected {args.fingerprint}",
            hint="do not trust it; check the host's key out of band",
        )
    trust_host(spec)
    out.result(
        "devices-trust",
        {
            "device": spec.name,
            "host": offered.host,
            "key_type": offered.key_type,
            "fingerprint": offered.fingerprint,
            "known_hosts": str(offered.known_hosts),
        },
        f"{spec.name}: trusted {offered.host}'s {offered.key_type} {offered.fingerprint} "
        f"(recorded in {offered.known_hosts})"
        + (f"; run `ofa-edge devices trust {spec.name}` again for the next host" if offered.jump else ""),
    )
    return 0


def _cmd_devices_unlock(args: argparse.Namespace, out: Output) -> int:
    return run_devices(args, out, "devices-unlock", _unlock)


def _unlock(spec: DeviceSpec, _: Progress) -> DeviceRun:
    """Remove ``spec``'s device lock, whoever holds it (``DeviceLock.break_lock``)."""
    from ofa_edge.devices.lock import DeviceLock

    holder = DeviceLock(spec, command="ofa-edge devices unlock").break_lock()
    doc = {"device": spec.name, "removed": holder.to_dict() if holder else None}
    return DeviceRun(
        doc, f"{spec.name}: " + (f"removed the lock of {holder.describe()}" if holder else "not locked")
    )


def _engine_note(engine: dict[str, Any]) -> str:
    """A compiled engine's line end: cached, or its build time (kept apart from inference)."""
    built = "cached" if engine["cached"] else f"built in {engine['build_s']:.1f} s"
    return f"; TensorRT {engine['tensorrt']} {engine['precision']} engine {built}"


def _cmd_bench(args: argparse.Namespace, out: Output) -> int:
    from ofa_edge.devices.spec import model_runtime

    model = Path(args.model)
    if not model.is_file():
        raise ConfigError(f"model {model} does not exist")
    model_runtime(model)  # a file of no runtime's format fails here, before any device
    return run_devices(args, out, "bench", lambda spec, progress: _bench(args, spec, model))


def _bench(args: argparse.Namespace, spec: DeviceSpec, model: Path) -> DeviceRun:
    """``model`` measured on one device, with the device's runtime when it takes the model's
    format (a Jetson's trtexec for .onnx), else the runtime the file's suffix names."""
    from ofa_edge.devices.sessions import open_session
    from ofa_edge.devices.spec import device_runtime

    runtime = device_runtime(spec, model)
    with open_session(spec) as session:
        report = session.bench([model], runtime=runtime, threads=args.threads, min_runs=args.runs)
    (r,) = report.results
    if r.error:
        raise AgentError(f"{spec.name}: {model.name}: {r.error}")
    threads = args.threads or spec.threads
    median = "mean" if r.median_is_mean else "median"
    spread = (
        f", p10 {r.p10_ms:.3f}, p90 {r.p90_ms:.3f}" if r.p10_ms is not None and r.p90_ms is not None else ""
    )
    backend = spec.backend_for(runtime)
    doc = {
        "device": spec.name,
        "model": str(model),
        "runtime": runtime,
        "backend": backend.to_dict(),
        "placement": r.placement.to_dict() if r.placement else None,
        "threads": threads,
        "median_ms": r.median_ms,
        "median_is_mean": r.median_is_mean,
        "p10_ms": r.p10_ms,
        "p90_ms": r.p90_ms,
        "runs": r.runs,
        "energy_mj": r.energy_mj,
        "power_mw": r.power_mw,
        "engine": r.engine,
        "end_to_end_ms": r.end_to_end_ms,
        **({"samples_ms": list(r.samples_ms)} if args.samples else {}),
        "conditions_before": report.conditions_before,
        "conditions_after": report.conditions_after,
    }
    text = (
        f"{spec.name} {model.name} ({backend.describe()}, {threads} thread(s)): {median} {r.median_ms:.3f} ms"
        f"{spread} over {r.runs} runs"
        + (f", {r.energy_mj:.3f} mJ per inference" if r.energy_mj is not None else "")
        + (_engine_note(r.engine) if r.engine else "")
        + (f"; {r.placement.describe()}" if r.placement else "")
        + (f"\nsamples (ms): {' '.join(f'{v:.3f}' for v in r.samples_ms)}" if args.samples else "")
    )
    return DeviceRun(doc, text, measured_ms=r.median_ms)


def register(sub: Any) -> None:
    """Add ``devices list|check|trust|unlock`` and ``bench``."""
    dsub = add_group(sub, "devices", "the device fleet")
    p = add_command(dsub, "list", "devices in the inventory", devices=True)
    p.set_defaults(func=_cmd_devices_list)
    p = add_command(dsub, "check", "connect, deploy the agent, print each fingerprint", devices=True)
    add_devices(p, lock=False)
    p.set_defaults(func=_cmd_devices_check)
    p = add_command(dsub, "trust", "show and record an SSH device's host key", devices=True)
    add_device(p)
    p.add_argument("--fingerprint", metavar="SHA256:...", help="refuse unless the key has this fingerprint")
    p.set_defaults(func=_cmd_devices_trust)
    p = add_command(dsub, "unlock", "remove a device lock left by a command that died", devices=True)
    add_devices(p, lock=False)
    p.set_defaults(func=_cmd_devices_unlock)

    p = add_command(sub, "bench", "push a model file and measure it on devices", devices=True)
    add_devices(p)
    p.add_argument("model", metavar="MODEL", help="MODEL.onnx or MODEL.tflite")
    add_device_threads(p, "threads the model runs with (default: the device's)")
    p.add_argument("--runs", type=int, default=50, help="minimum timed runs")
    p.add_argument("--samples", action="store_true", help="also report every timed run (--json: samples_ms)")
    p.set_defaults(func=_cmd_bench)
