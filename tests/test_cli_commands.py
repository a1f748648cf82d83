"""Every ``ofa-edge`` command run as users run it (a subprocess) with its effect checked: files
written, their content, exit codes, JSON documents; the ``--json`` error document of each error
family; and a check that no command of the parser lands without a test that runs it.

Runs stay small: one resolution, one pass, a handful of subnets, one training step, a made-up
ImageFolder of shipped CIFAR-10 training images.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ofa_edge.cli.common import DEFAULT_SUPERNET
from ofa_edge.cli.main import build_parser
from ofa_edge.devices.lock import DeviceLock
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.lut import LatencyTable
from ofa_edge.supernet.registry import get_supernet_info
from ofa_edge.supernet.space import ArchConfig
from ofa_edge.testing.sshd import SshDevice
from tests.adb_testbed import free_port
from tests.test_cli import DEBUG_HINT, error_line, run
from tests.test_fleet import _ssh_table

SUPERNET = DEFAULT_SUPERNET  # what the commands below use, given no --supernet
SMOKE_LAYOUT = "ofa-mbv3-cifar10"  # the registry supernet with the smoke recipe's layout
TABLE = f"local_{SUPERNET}_fp32_t1.json"  # lut build's default file name for `local`
#: The test files whose ``run(...)``/``ok(...)`` calls the coverage check reads.
RUNNING_FILES = (Path(__file__), Path(__file__).with_name("test_cli.py"))
RUNNERS = ("run", "ok")


def ok(*args: str, cwd: Path | None = None) -> dict[str, Any]:
    """``ofa-edge --json ARGS`` that must succeed: its JSON document."""
    res = run("--json", *args, cwd=cwd)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- latency tables, search, export, push, bench, specialize on `local` --------------------------


@pytest.fixture(scope="module")
def local_lut(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """``lut build local`` then ``lut validate local`` in a folder, as a user runs them there
    (default table name): (folder, build document, validate document)."""
    folder = tmp_path_factory.mktemp("lut")
    with pytest.MonkeyPatch.context() as env:  # module scope: conftest's per-test isolation is not on yet
        env.setenv("OFA_EDGE_AGENT_DIR", str(folder / "agent"))
        env.setenv("OFA_EDGE_CACHE", str(folder / "cache"))
        built = ok("lut", "build", "local", "--resolutions", "24", "--passes", "1", cwd=folder)
        validated = ok(
            "lut", "validate", "local", "--samples", "4", "--fit", "2", "--rounds", "1", "--plot", "fit.png",
            cwd=folder,
        )  # fmt: skip
    return folder, built, validated


def _table_copy(local_lut: tuple[Path, dict, dict], folder: Path) -> LatencyTable:
    """Copy the module's calibrated table into ``folder`` under its default name; load it."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local_lut[0] / TABLE, folder / TABLE)
    return LatencyTable.load(folder / TABLE)


def test_lut_build_and_validate_write_a_calibrated_table(local_lut: tuple[Path, dict, dict]) -> None:
    folder, built, validated = local_lut
    from ofa_edge.lut.keys import enumerate_ops

    spec = get_supernet_info(SUPERNET).spec
    table = LatencyTable.load(folder / TABLE)
    assert built["out"] == TABLE and built["device"] == "local" and built["resolutions"] == [24]
    expected = {op.key for op in enumerate_ops(spec, [24])}
    assert set(table.entries[24]) == expected and built["ops"] == len(expected)
    assert all(e.median_ms > 0 and len(e.passes) == 1 for e in table.entries[24].values())
    assert table.threads == 1 and table.precision == "fp32"
    assert (validated["subnets"], validated["fitted_on"], validated["held_out"]) == (4, 2, 2)
    assert table.calibration is not None and table.calibration.subnets == 2
    assert validated["calibration"] == table.calibration.terms  # stored in the file it reports
    assert (folder / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "agent" / "ofa_edge_agent.py").is_file(), "the agent went to OFA_EDGE_AGENT_DIR"


def test_lut_predict_and_import_ofa_round_trip(local_lut: tuple[Path, dict, dict], tmp_path: Path) -> None:
    from ofa_edge.lut.table import export_ofa

    table = _table_copy(local_lut, tmp_path)
    arch = get_supernet_info(SUPERNET).spec.space.min_arch(24)
    arch.save(tmp_path / "arch.json")
    calibrated = ok("lut", "predict", str(tmp_path / TABLE), "--arch", str(tmp_path / "arch.json"))
    assert calibrated["calibrated"] and calibrated["device"] == "local" and calibrated["arch"]["r"] == 24
    assert calibrated["predicted_ms"] == pytest.approx(table.predict(arch))
    # MIT's YAML layout of the same table, imported back: the uncalibrated op sum survives.
    export_ofa(table, tmp_path / "mit")
    imported = ok(
        "lut", "import-ofa", str(tmp_path / "mit"), "--supernet", SUPERNET, "--device-name", "mit",
        "--out", str(tmp_path / "imported.json"),
    )  # fmt: skip
    assert imported["entries"] == len(table.entries[24]) and imported["resolutions"] == [24]
    again = ok("lut", "predict", str(tmp_path / "imported.json"), "--arch", str(tmp_path / "arch.json"))
    assert not again["calibrated"] and again["device"] == "mit"
    assert again["predicted_ms"] == again["op_sum_ms"] == pytest.approx(calibrated["op_sum_ms"])


def test_search_export_push_and_bench_on_local(local_lut: tuple[Path, dict, dict], tmp_path: Path) -> None:
    import onnxruntime as ort

    table = _table_copy(local_lut, tmp_path)  # found by its default name in the working directory
    space = get_supernet_info(SUPERNET).spec.space
    budget = (table.predict(space.min_arch(24)) + table.predict(space.max_arch(24))) / 2
    options = ("--latency-ms", f"{budget}", "--generations", "30", "--out", "best.json")
    found = ok("search", "--device", "local", *options, cwd=tmp_path)
    (best,) = found["results"]
    arch = ArchConfig.load(tmp_path / "best.json")
    assert arch.to_dict() == best["arch"] and best["latency_ms"]["local"] <= budget
    assert best["latency_ms"]["local"] == pytest.approx(table.predict(arch))

    model = tmp_path / "model.onnx"
    exported = ok("export", "best.json", "--format", "onnx", "--out", "model.onnx", cwd=tmp_path)
    assert exported["sha256"] == sha256(model) and exported["arch"] == best["arch"]
    logits = ort.InferenceSession(str(model)).run(None, {"input": np.zeros((1, 3, 24, 24), np.float32)})[0]
    assert logits.shape == (1, 10) and np.isfinite(logits).all()

    pushed = ok("push", "local", "model.onnx", "--verify", cwd=tmp_path)  # the table: found from the record
    remote = Path(pushed["file"]["remote"])
    agent_dir = Path(os.environ["OFA_EDGE_AGENT_DIR"])  # the test's own (conftest), not the user's
    assert Path(pushed["device"]["fingerprint"]["agent_dir"]) == agent_dir == remote.parent.parent
    assert sha256(remote) == exported["sha256"] == pushed["file"]["sha256"] and pushed["verified"]
    assert pushed["predicted_ms"] == pytest.approx(table.predict(arch)) and pushed["measured_ms"] > 0
    manifest = json.loads((tmp_path / pushed["manifest"]).read_text())
    assert (
        manifest["file"]["sha256"] == exported["sha256"] and manifest["measured_ms"] == pushed["measured_ms"]
    )

    bench = ok("bench", "local", str(model), "--runs", "5")  # a summary: no raw samples
    assert bench["runtime"] == "onnxruntime" and bench["runs"] >= 5 and "samples_ms" not in bench
    assert bench["p10_ms"] <= bench["median_ms"] <= bench["p90_ms"] and bench["median_is_mean"] is False
    raw = ok("bench", "local", str(model), "--runs", "5", "--samples")
    assert raw["runs"] == len(raw["samples_ms"]) >= 5 and min(raw["samples_ms"]) <= raw["median_ms"]


def test_specialize_reuses_a_calibrated_table(local_lut: tuple[Path, dict, dict], tmp_path: Path) -> None:
    out = tmp_path / "out"
    table = _table_copy(local_lut, out)
    before = sha256(out / TABLE)
    doc = ok("specialize", "local", "--out", str(out), "--resolutions", "24", "--passes", "1")
    assert doc["table"]["reused"] and sha256(out / TABLE) == before, "a calibrated table is not re-measured"
    low, high = doc["search"]["reachable_ms"]
    assert doc["search"]["budget_ms"] == pytest.approx((low + high) / 2)  # the middle, as the README says
    arch = ArchConfig.from_dict(doc["search"]["arch"])
    assert arch.r == 24 and table.predict(arch) == pytest.approx(doc["deployment"]["predicted_ms"])
    assert low <= table.predict(arch) <= doc["search"]["budget_ms"]
    deployed = Path(doc["deployment"]["file"]["local"])
    assert deployed.parent == out and sha256(deployed) == doc["export"]["sha256"]
    assert doc["deployment"]["measured_ms"] > 0
    assert json.loads(Path(doc["summary_file"]).read_text())["search"] == doc["search"]


# --- devices ---------------------------------------------------------------------------------------


def test_devices_list_trust_and_check(ssh_device: SshDevice, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"  # nothing trusted yet
    inventory = tmp_path / "devices.toml"
    inventory.write_text(
        _ssh_table("pi", ssh_device, known_hosts, "~/agent-cli")
        + '[devices.box]\ntransport = "local"\nthreads = 2\ngroups = ["lab", "x86"]\n'
    )
    inv = ("--inventory", str(inventory))
    listed = ok("devices", "list", *inv)["devices"]
    assert [(d["name"], d["transport"], d["threads"], d["groups"]) for d in listed] == [
        ("pi", "ssh", 1, []),
        ("box", "local", 2, ["lab", "x86"]),
        ("local", "local", 1, []),
    ]
    assert run("devices", "list", *inv).stdout.splitlines()[1].endswith("  groups: lab, x86")
    assert listed[0]["address"] == f"{ssh_device.user}@{ssh_device.host}:{ssh_device.port}"

    res = run("--json", "devices", "check", "pi", *inv)  # exit 4: the device-connection family
    assert res.returncode == 4 and json.loads(res.stdout)["devices"]["pi"]["reference"] == "host-key"
    trusted = ok("devices", "trust", "pi", *inv)
    keygen = subprocess.run(
        ["ssh-keygen", "-lf", str(ssh_device.host_public_key)], capture_output=True, text=True, check=True
    )
    assert trusted["fingerprint"] == keygen.stdout.split()[1]
    assert ssh_device.host_public_key.read_text().split()[1] in known_hosts.read_text()

    checked = ok("devices", "check", "pi", "box", *inv)["devices"]
    assert checked["pi"]["ok"] and checked["box"]["ok"]
    assert checked["pi"]["fingerprint"]["agent_dir"] == f"{ssh_device.home}/agent-cli"
    # A local device without a workdir puts its agent where OFA_EDGE_AGENT_DIR says (conftest).
    agent_dir = Path(checked["box"]["fingerprint"]["agent_dir"])
    assert str(agent_dir) == os.environ["OFA_EDGE_AGENT_DIR"]
    assert (agent_dir / "ofa_edge_agent.py").is_file()


# --- training and accuracy -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageFolder of the shipped CIFAR-10 training images: 6,000 ``train`` images (the
    1,000 repeated; accuracy tables hold out 5,000 and calibrate on 1,000) and 40 ``test``, 4 of
    each class (class numbers come from the folders present)."""
    from PIL import Image

    from ofa_edge.accuracy.calibration import load_calibration_set

    shipped = load_calibration_set()
    test = [i for k in range(len(shipped.classes)) for i in np.flatnonzero(shipped.labels == k)[:4]]
    root = tmp_path_factory.mktemp("cifar") / "ds"
    for split, picks in (("train", np.arange(6000) % len(shipped)), ("test", test)):
        for i, j in enumerate(picks):
            folder = root / split / shipped.classes[shipped.labels[j]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(shipped.images[j]).save(folder / f"{i}.png")
    return root


def test_train_pauses_and_release_refuses_until_allowed(dataset: Path, tmp_path: Path) -> None:
    trained = ok(
        "train", "--data", str(dataset), "--out", str(tmp_path / "run"), "--recipe", "smoke", "--hours", "0"
    )
    assert not trained["finished"] and trained["run_dir"] == str((tmp_path / "run").resolve())
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and trained["train_seconds"] > 0

    res = run("release", str(tmp_path / "run"), "--out", str(tmp_path / "w.pt"))
    assert "has not finished training" in error_line(res, 7) and not (tmp_path / "w.pt").exists()
    for_registry = ("--supernet", SMOKE_LAYOUT, "--allow-unfinished")
    released = ok("release", str(tmp_path / "run"), "--out", str(tmp_path / "w.pt"), *for_registry)
    assert released["sha256"] == sha256(tmp_path / "w.pt")
    assert released["bytes"] == (tmp_path / "w.pt").stat().st_size and released["supernet"] == SMOKE_LAYOUT
    assert released["entry"] is None and not (tmp_path / "w.toml").exists()  # the registry's: no entry file


def test_eval_accuracy_build_resume_and_fit(dataset: Path, tmp_path: Path) -> None:
    from ofa_edge.accuracy.measure import CALIB_IMAGES, subnet_top1
    from ofa_edge.accuracy.predictor import load_predictor
    from ofa_edge.accuracy.table import read_table
    from ofa_edge.data import load_split
    from ofa_edge.supernet.preprocessing import CIFAR10
    from ofa_edge.supernet.registry import load_supernet

    doc = ok("eval", "--max", "--r", "32", "--data", str(dataset), "--host-threads", "1")
    assert doc["images"] == 40 and doc["calibration"] == {"split": "train", "images": CALIB_IMAGES}
    net = load_supernet(SUPERNET)
    expected = subnet_top1(
        net,
        ArchConfig.from_dict(doc["arch"]),
        load_split(dataset, "train").subset(CALIB_IMAGES),
        load_split(dataset, "test"),
        CIFAR10,
    )
    assert doc["top1"] == pytest.approx(expected) and doc["top1"] >= 50  # images it was trained on

    table = tmp_path / "acc.jsonl"
    options = ("--data", str(dataset), "--out", str(table), "--val-images", "20", "--host-threads", "1")
    assert ok("accuracy", "build", *options, "--samples", "3")["subnets"] == 3
    first = table.read_text().splitlines()
    records = read_table(table).records
    assert [r.index for r in records] == [0, 1, 2]
    assert all(r.top1 / 5 == pytest.approx(round(r.top1 / 5)) for r in records)  # k of 20 images
    resumed = ok("accuracy", "build", *options, "--samples", "8")
    assert resumed["subnets"] == 8 and len(read_table(table).records) == 8
    assert table.read_text().splitlines()[:4] == first, "the subnets measured are kept as they are"

    fit = ok("accuracy", "fit", str(table), "--out", str(tmp_path / "pred.pt"), "--epochs", "20")
    assert (fit["n_train"], fit["n_val"], fit["table_sha256"]) == (6, 2, sha256(table))
    loaded = load_predictor(tmp_path / "pred.pt")
    assert loaded.supernet == SUPERNET and loaded.metrics["rmse"] == fit["rmse"]


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "reference", "exit_code", "needle"),
    [
        (["bench", "local", "{tmp}/missing.onnx"], "invalid-config", 2, "does not exist"),
        (
            ["count", "--supernet", "ofa-mbv3-cifar1O", "--max"],
            "unknown-name",
            3,
            "did you mean ofa-mbv3-cifar10",
        ),
        (["bench", "nowhere", "{tmp}/m.onnx"], "unknown-name", 3, "known: local"),
        (
            ["bench", "gone", "{tmp}/m.onnx", "--inventory", "{tmp}/devices.toml"],
            "device-unreachable",
            4,
            "cannot reach",
        ),
        (["bench", "local", "{tmp}/m.onnx"], "agent-error", 5, "m.onnx"),
        (
            ["lut", "predict", "{tmp}/bad.json", "--arch", "{tmp}/arch.json"],
            "bad-latency-table",
            6,
            "not valid JSON",
        ),
        (["release", "{tmp}/no-run", "--out", "{tmp}/w.pt"], "bad-checkpoint", 7, "no training checkpoint"),
        (
            [
                "export",
                "{tmp}/arch.json",
                "--random-weights",
                "--format",
                "onnx",
                "--fp32-tolerance",
                "-1",
                "--out",
                "{tmp}/m2.onnx",
            ],
            "export-check-failed",
            8,
            "",
        ),
        (["search", "--macs", "0.5"], "infeasible-budget", 9, "below the smallest reachable"),
    ],
    ids=[
        "bad-input",
        "unknown-supernet",
        "unknown-device",
        "unreachable-device",
        "device-command",
        "bad-table",
        "bad-checkpoint",
        "export-check",
        "infeasible-budget",
    ],
)
def test_error_families_exit_codes_and_json(
    argv: list[str], reference: str, exit_code: int, needle: str, tmp_path: Path
) -> None:
    """Each error family's exit code; one line on stderr (no traceback) and the debug hint under
    it; one ``ofa-edge/error/1`` document on stdout."""
    from ofa_edge.errors import EXIT_CODES

    (tmp_path / "bad.json").write_text('{"schema_version": 6, "entries": ')  # cut short
    get_supernet_info(SUPERNET).spec.space.min_arch(24).save(tmp_path / "arch.json")
    (tmp_path / "m.onnx").write_bytes(b"not a model")
    (tmp_path / "devices.toml").write_text(f'[devices.gone]\nhost = "127.0.0.1"\nport = {free_port()}\n')
    res = run("--json", *(a.format(tmp=tmp_path) for a in argv))
    line = error_line(res, exit_code)
    doc = json.loads(res.stdout)
    assert doc["schema"] == "ofa-edge/error/1" and set(doc["error"]) == {"reference", "message", "hint"}
    error = doc["error"]
    assert error["reference"] == reference and needle in f"{error['message']} (hint: {error['hint']})"
    assert line == f"ofa-edge: error: {error['message']}" + (
        f" (hint: {error['hint']})" if error["hint"] else ""
    )
    assert exit_code in EXIT_CODES and exit_code not in (0, 1, 130)


def test_error_families_have_distinct_exit_codes() -> None:
    """Every error class is importable from ofa_edge.errors and exits with its family's code."""
    import ofa_edge.errors as errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.OfaEdgeError)]
    assert len(classes) >= 20
    assert set(errors.EXIT_CODES) == set(range(1, 10)) and errors.EXIT_INTERRUPTED == 130
    for cls in classes:
        family = next(f for f in cls.__mro__ if f in errors.EXIT_CODES.values())
        assert cls.exit_code == family.exit_code, cls
    # each module that raises them still offers them under their old names
    from ofa_edge.errors import CommandTimeout, DeviceUnreachable, HostKeyError
    from ofa_edge.lut.table import LutError
    from ofa_edge.search.evolution import InfeasibleError

    assert (HostKeyError.exit_code, DeviceUnreachable.exit_code, CommandTimeout.exit_code) == (4, 4, 5)
    assert (LutError.exit_code, InfeasibleError.exit_code) == (6, 9)


def test_interrupted_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from ofa_edge.cli import main, supernets

    def interrupted(args: argparse.Namespace, out: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(supernets, "_cmd_supernets", interrupted)
    assert main.main(["supernets"]) == 130
    assert capsys.readouterr().err == "ofa-edge: error: interrupted\n"


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFA_EDGE_DEBUG", "1")
    res = run("--json", "count", "--supernet", "nope", "--max")
    assert res.returncode == 1 and res.stderr.startswith("Traceback (most recent call last):")
    assert (
        res.stderr.strip().splitlines()[-1].startswith("ofa_edge.errors.UnknownName: unknown supernet 'nope'")
    )
    assert DEBUG_HINT not in res.stderr


# --- the dialect: help, defaults, where --inventory is ---------------------------------------------


def _parsers(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """The parser of every command and group, by path (``()``: the top level)."""
    found = {prefix: parser}
    for name, p in _subcommands(parser).items():
        found |= _parsers(p, (*prefix, name))
    return found


#: The commands that reach a device, and so read the inventory.
def test_lut_adapt_the_ssh_test_beds_table_to_this_machine(tmp_path: Path) -> None:
    """``ofa-edge lut adapt local`` end to end: 8 subnets measured (1 round), the shipped table
    of the cgroup-slowed SSH device corrected with them, written with its origin and this
    device's own reference level; 4 held-out subnets report fidelity. Checks function, not
    accuracy (2 shared cores): the held-out MAPE must stay under 100 %."""
    from ofa_edge.lut.adapt import op_type
    from ofa_edge.lut.table import LatencyTable

    shipped = Path(__file__).parent.parent / "latency_tables" / "testbed-sshd_ofa-mbv3-cifar10_fp32_t1.json"
    out = tmp_path / "local-adapted.json"
    report = ok(
        "lut", "adapt", "local", "--from", str(shipped), "--samples", "8", "--held-out", "4", "--rounds", "1",
        "--out", str(out),
    )  # fmt: skip
    table, source = LatencyTable.load(out), LatencyTable.load(shipped)
    assert table.device.name == "local" and table.adapted is not None
    assert table.adapted.source_device == source.device.name == report["source_device"]
    assert table.adapted.samples == report["samples"] == 8 and report["table"] == str(out)
    assert table.reference is not None and table.reference.median_ms > 0
    assert table.calibration is not None and table.calibration.subnets == 8
    assert set(table.entries) == set(source.entries)
    for r, section in table.entries.items():
        for key, entry in section.items():
            factor = table.adapted.type_scales[op_type(key)]
            assert entry.median_ms == pytest.approx(source.entries[r][key].median_ms * factor)
    assert report["held_out"]["mape_pct"] < 100 and report["device_seconds"] > 0


DEVICE_COMMANDS = {
    ("devices", "list"), ("devices", "check"), ("devices", "trust"), ("devices", "unlock"), ("bench",),
    ("lut", "build"), ("lut", "adapt"), ("lut", "validate"), ("specialize",), ("demo",), ("push",),
}  # fmt: skip


def test_devices_unlock_removes_a_lock_and_names_its_holder(tmp_path: Path) -> None:
    """A lock another command holds (here: this process, as a command that hangs would) is
    removed at once by ``devices unlock``, which names whose it was; a second run finds none."""
    inv = tmp_path / "devices.toml"
    inv.write_text(f'[devices.local]\ntransport = "local"\nworkdir = "{tmp_path / "agent"}"\n')
    spec = DeviceSpec(name="local", workdir=str(tmp_path / "agent"))
    held = DeviceLock(spec, command="a build that hangs")
    held.acquire()
    try:
        doc = ok("devices", "unlock", "local", "--inventory", str(inv))
        assert doc["removed"]["command"] == "a build that hangs" and doc["removed"]["pid"] == os.getpid()
        assert DeviceLock(spec).holder() is None
        res = run("devices", "unlock", "local", "--inventory", str(inv))
        assert res.returncode == 0 and res.stdout.strip() == "local: not locked", res.stderr
    finally:
        held.release()


def test_every_option_has_help_and_shows_its_default() -> None:
    for path, p in _parsers(build_parser()).items():
        text = " ".join(p.format_help().split())
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"ofa-edge {' '.join(path)}: {action.dest} has no help"
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                assert f"(default: {action.default})" in text, f"{' '.join(path)} {action.option_strings}"


def test_inventory_only_on_commands_that_reach_devices(tmp_path: Path) -> None:
    parsers = _parsers(build_parser())
    with_inventory = {
        path for path, p in parsers.items() if any("--inventory" in a.option_strings for a in p._actions)
    }
    assert with_inventory == DEVICE_COMMANDS
    res = run("lut", "predict", "t.json", "--arch", "a.json", "--inventory", "devices.toml")
    assert res.returncode == 2 and "unrecognized arguments: --inventory" in res.stderr
    res = run("--inventory=devices.toml", "devices", "list")  # not a global option either
    assert res.returncode == 2 and "unrecognized arguments: --inventory" in res.stderr


def test_one_dialect_for_precision_and_threads() -> None:
    parse = build_parser().parse_args
    for argv in (["lut", "build", "local"], ["specialize", "local"], ["search"], ["export", "a.json"]):
        extra = ["--format", "onnx", "--out", "m.onnx"] if argv[0] == "export" else []
        assert parse([*argv, *extra]).precision == "fp32"
        assert (
            parse([*argv, *extra, "--int8"]).precision
            == parse([*argv, *extra, "--precision", "int8"]).precision
            == "int8"
        )
    host = {
        path
        for path, p in _parsers(build_parser()).items()
        if any("--host-threads" in a.option_strings for a in p._actions)
    }
    assert host == {("train",), ("eval",), ("accuracy", "build"), ("export",)}
    assert parse(["lut", "build", "local"]).resolutions is None  # the supernet's own, not MIT's


def test_lut_build_defaults_to_the_supernets_resolutions(
    local_lut: tuple[Path, dict, dict], tmp_path: Path
) -> None:
    """``lut build local`` with no options on the default supernet covers its resolutions (24-40
    px); every op is in the table already, so nothing is measured."""
    from ofa_edge.lut.keys import enumerate_ops
    from ofa_edge.lut.table import PASSES, Entry

    table = _table_copy(local_lut, tmp_path)
    space = get_supernet_info(SUPERNET).spec.space
    done = Entry(median_ms=1.0, passes_ms=[1.0] * PASSES)  # measured in every pass a build makes
    for r in space.resolutions:
        for op in enumerate_ops(table.spec, [r]):
            table.entries.setdefault(r, {})[op.key] = done
    table.save(tmp_path / TABLE)
    built = ok("lut", "build", "local", cwd=tmp_path)
    assert built["out"] == TABLE and built["resolutions"] == list(space.resolutions) != [24]
    after = LatencyTable.load(tmp_path / TABLE).entries
    assert all(e.passes == done.passes for r in space.resolutions for e in after[r].values()), "measured"


# --- no command without a test ---------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's subcommands by name (argparse has no public accessor)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def parser_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every runnable command path of the parser, e.g. ``("lut", "build")``."""
    subs = _subcommands(parser)
    if not subs:
        return {prefix}
    return set().union(*(parser_commands(p, (*prefix, name)) for name, p in subs.items()))


def commands_run_in(files: tuple[Path, ...], parser: argparse.ArgumentParser) -> set[tuple[str, ...]]:
    """The commands the ``run(...)``/``ok(...)`` calls of ``files`` spell out in string literals."""
    found = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if not (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in RUNNERS
            ):
                continue
            current, path = parser, []
            for arg in node.args:  # options and their values are skipped; command words descend
                subs = _subcommands(current)
                if isinstance(arg, ast.Constant) and arg.value in subs:
                    current, path = subs[arg.value], [*path, arg.value]
            if path and not _subcommands(current):
                found.add(tuple(path))
    return found


def test_every_command_is_run_by_a_test() -> None:
    parser = build_parser()
    ran = commands_run_in(RUNNING_FILES, parser)
    missing = sorted(" ".join(c) for c in parser_commands(parser) - ran)
    assert not missing, (
        f"no test runs `ofa-edge {'`, `ofa-edge '.join(missing)}`: add one to {Path(__file__).name}"
    )
    # The check itself: a command added to the parser and run nowhere is caught.
    next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).add_parser("brand-new")
    assert parser_commands(parser) - ran == {("brand-new",)}
