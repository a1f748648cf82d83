"""The emulated aarch64 Raspberry Pi 4 (``ofa_edge.testing.emulated_pi``) through the product's own
commands: ``devices check``, ``bench`` and ``push --verify`` of ONNX and TFLite models in fp32 and
int8 (their outputs compared with this x86 host's), and ``specialize`` end to end.

An emulator is 5-50x slower than the host and noisy: these tests check function and consistency,
never speed. They skip, saying why, only where qemu-user/binfmt_misc cannot run (``.ci/run``
installs them); a failing root-filesystem build fails them.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ofa_edge.data import ImageArray
from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.export.check import export_subnet
from ofa_edge.export.images import default_calibration
from ofa_edge.supernet import registry
from ofa_edge.supernet.preprocessing import CIFAR10
from ofa_edge.supernet.registry import load_supernet
from ofa_edge.supernet.space import ArchConfig, SearchSpace
from ofa_edge.supernet.spec import MBv3Spec
from ofa_edge.testing.emulated_pi import EmulatedPi, arm_unavailable, build_rootfs

OFA_EDGE = str(Path(sys.executable).with_name("ofa-edge"))
SUPERNET = "ofa-mbv3-cifar10"
SMALLEST = ArchConfig((3,) * 20, (3,) * 20, (2,) * 5, 24)
#: The inventory's slowdown for the emulated Pi: every host wait for it is 20x a desktop's.
SLOWDOWN = 20.0
#: Under-voltage and throttling, now and since boot (``vcgencmd get_throttled``).
THROTTLED = 0x50005


@pytest.fixture(scope="module")
def pi() -> Iterator[EmulatedPi]:
    reason = arm_unavailable()
    if reason:
        pytest.skip(f"NO EMULATED ARM DEVICE: {reason}")
    with EmulatedPi(build_rootfs(), throttled=THROTTLED) as device:
        yield device


@pytest.fixture(scope="module")
def inventory(pi: EmulatedPi, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's inventory naming the Pi, as the README shows one."""
    path = tmp_path_factory.mktemp("inventory") / "devices.toml"
    path.write_text(
        f'[devices.pi]\nhost = "{pi.host}"\nport = {pi.port}\nuser = "{pi.user}"\nkey = "{pi.client_key}"\n'
        f'known_hosts = "{pi.known_hosts}"\nslowdown = {SLOWDOWN}\nworkdir = "~/ofa-edge-agent"\n'
    )
    return path


def spec(pi: EmulatedPi, **overrides: Any) -> DeviceSpec:
    return dataclasses.replace(pi.device_spec("pi"), slowdown=SLOWDOWN, **overrides)


def cli(inventory: Path, *args: str) -> dict[str, Any]:
    res = subprocess.run(
        [OFA_EDGE, "--json", *args, "--inventory", str(inventory)],
        capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def test_devices_check_names_the_pi_its_cpu_and_its_state(inventory: Path) -> None:
    fp = cli(inventory, "devices", "check", "pi")["devices"]["pi"]["fingerprint"]
    assert fp["arch"] == "aarch64" and fp["cpu_model"] == "Cortex-A72" and fp["cores"] == 4
    assert [(c["name"], c["count"]) for c in fp["core_types"]] == [("Cortex-A72", 4)]
    assert fp["board"] == "Raspberry Pi 4 Model B Rev 1.4" and fp["governors"] == ["ondemand"]
    assert fp["conditions"]["throttle"]["now"] == ["under-voltage", "throttled"]
    assert fp["conditions"]["temperatures_c"] == {"cpu-thermal": 48.3}
    assert fp["python"].startswith("3.11") and fp["python"] != ".".join(map(str, sys.version_info[:3]))
    for module, dist in (("onnxruntime", "onnxruntime"), ("ai_edge_litert", "ai-edge-litert")):
        assert fp["runtimes"][module]["version"] == importlib.metadata.version(dist)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The smallest subnet of the shipped supernet at 24 px as ONNX and TFLite, fp32 and int8
    (calibrated on 256 shipped images, as ``--calib-images`` defaults to, checked on 256 others)."""
    folder = tmp_path_factory.mktemp("exported")
    with np.load(default_calibration()) as z:
        images = ImageArray(z["images"][:512], z["labels"][:512], tuple(z["classes"]))
    torch.set_num_threads(1)
    models = []
    for fmt in ("onnx", "tflite"):
        for precision in ("fp32", "int8"):
            out = folder / f"smallest-{precision}.{fmt}"
            export_subnet(
                load_supernet(SUPERNET),
                SUPERNET,
                SMALLEST,
                fmt,
                precision,
                images.images[:256],
                out,
                val_images=images.images[256:],
                val_labels=images.labels[256:],
                max_top1_drop=5,
            )  # fmt: skip (int8's own quality is test_export's; here 256 images judge it coarsely)
            models.append(out)
    return models


def test_bench_runs_onnx_and_tflite_in_fp32_and_int8(pi: EmulatedPi, exported: list[Path]) -> None:
    for runtime, models in (("onnxruntime", exported[:2]), ("tflite", exported[2:])):
        with AgentSession(spec(pi, runtime=runtime)) as session:
            report = session.bench(models, min_runs=5, min_seconds=0.0)
        assert [(r.name, r.error) for r in report.results] == [(m.name, None) for m in models]
        assert all(r.median_ms and r.median_ms > 0 and r.runs >= 5 for r in report.results)
        assert report.conditions_after["throttle"]["raw"] == hex(THROTTLED)


def test_push_verify_gives_the_hosts_outputs_on_arm(inventory: Path, exported: list[Path]) -> None:
    """The same file computes the same outputs on the ARM device as on this x86 host: fp32
    logits within 1e-3, int8 top-1 within 0.5 point, on 200 check images."""
    for model in exported:
        dep = cli(inventory, "push", "pi", str(model), "--verify")
        assert dep["verified"] and dep["measured_ms"] > 0, model.name
        outputs = dep["outputs"]
        assert outputs["images"] == 200 and outputs["ok"], (model.name, outputs)
        assert outputs["host_top1"] > 20, "trained weights: far above chance (10 %)"
        if "fp32" in model.name:
            assert outputs["max_abs_diff"] <= 1e-3 and outputs["agreement"] == 1.0
        else:
            assert abs(outputs["host_top1"] - outputs["device_top1"]) <= 0.5
        assert dep["device"]["fingerprint"]["arch"] == "aarch64"


def test_specialize_end_to_end_on_the_pi(
    pi: EmulatedPi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """table (one resolution, one pass) -> validation -> search -> export -> push -> verify, for
    the default layout with kernel 3 alone and expands 3 and 6 (2 variants per block slot, not
    9): the table's build under emulation is most of the run."""
    from ofa_edge.deploy.specialize import specialize

    space = SearchSpace(ks_list=(3,), expand_ratio_list=(3, 6), resolutions=(24,))
    small = registry.SupernetInfo("small-cifar10", "a test's", MBv3Spec(0.5, 10, space), CIFAR10)
    monkeypatch.setitem(registry._SUPERNETS, small.name, small)
    torch.manual_seed(0)
    torch.save(small.spec.build().state_dict(), tmp_path / "weights.pt")
    run = specialize(
        spec(pi),
        tmp_path,
        supernet=small.name,
        checkpoint=tmp_path / "weights.pt",
        objective="macs",  # no predictor for this space
        resolutions=[24],
        validate_samples=4,
        passes=1,
        generations=20,
    )
    summary = run.to_dict()
    assert summary["deployment"]["device"]["fingerprint"]["cpu_model"] == "Cortex-A72"
    assert summary["deployment"]["outputs"]["ok"]
    assert summary["deployment"]["measured_ms"] > 0 and summary["deployment"]["predicted_ms"] > 0
    low, high = summary["search"]["reachable_ms"]
    assert 0 < low < high and summary["search"]["costs"]["latency on pi"] <= summary["search"]["budget_ms"]
    table = json.loads(Path(summary["table"]["path"]).read_text())
    assert table["device"]["fingerprint"]["arch"] == "aarch64"
    assert os.path.isfile(tmp_path / "pareto.png")
