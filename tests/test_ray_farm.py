"""A Ray farm on a local multi-node cluster (``ray.cluster_utils.Cluster``, token authentication
on): each device's work runs on the node that advertises ``device:NAME``, failures per device.

The cluster: a head with no CPUs (no device work can land there) and two worker nodes; node A
owns ``farm-a``, node B owns ``farm-b`` and ``farm-down`` (an SSH device nothing answers for);
no node owns ``farm-ghost``. The devices are this machine (``local``), so these tests check
function (which node ran which device, each failure its own), not speed.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from ofa_edge import errors
from ofa_edge.cli.main import main
from ofa_edge.devices.farm import RAY_ADDRESS_ENV, node_resources
from ofa_edge.lut import LatencyTable
from tests.adb_testbed import free_port
from tests.models import conv_model

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'ofa-edge[ray]'")

FARM = ["farm-a", "farm-b", "farm-down", "farm-ghost"]  # inventory order


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The running cluster's address, each device's owning node id, and the inventory."""
    from ray._private.authentication_test_utils import reset_auth_token_state
    from ray.cluster_utils import Cluster

    folder = tmp_path_factory.mktemp("farm")
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "OFA_EDGE_CACHE")}
    # Set before the nodes start: they, and the workers running the devices' work, inherit it.
    os.environ.update(
        RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), OFA_EDGE_CACHE=str(folder / "cache")
    )
    reset_auth_token_state()  # this process read Ray's settings when it imported ray
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        a = cluster.add_node(num_cpus=1, resources=json.loads(node_resources(["farm-a"])))
        b = cluster.add_node(num_cpus=1, resources=json.loads(node_resources(["farm-b", "farm-down"])))
        cluster.wait_for_nodes()
        inventory = folder / "devices.toml"
        inventory.write_text(
            "".join(
                f'[devices.{name}]\ntransport = "local"\nworkdir = "{folder / name}"\n\n'
                for name in ("farm-a", "farm-b")
            )
            + f'[devices.farm-down]\nhost = "127.0.0.1"\nport = {free_port()}\nconnect_timeout = 3\n\n'
            + f'[devices.farm-ghost]\ntransport = "local"\nworkdir = "{folder / "ghost"}"\n'
        )
        owners = {"farm-a": a.node_id, "farm-b": b.node_id, "farm-down": b.node_id}
        yield {"address": cluster.address, "owners": owners, "folder": folder, "inventory": str(inventory)}
    finally:
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_auth_token_state()


def test_bench_runs_each_device_on_its_own_node(
    farm: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """``bench --ray``: each working device measured by a task on the node that owns it; the
    unreachable device fails on its node, the unadvertised one fails here, each alone."""
    model = conv_model(farm["folder"] / "conv.onnx")
    argv = ["--json", "bench", *FARM, str(model), "--runs", "5", "--inventory", farm["inventory"]]
    code = main([*argv, "--ray", farm["address"]])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    by_name = {r["device"]: r for r in doc["devices"]}
    assert [r["device"] for r in doc["devices"]] == FARM and (doc["ok"], doc["failed"]) == (2, 2)
    assert code == doc["exit_code"] == 4, err  # both failures are unreachable devices
    for name in ("farm-a", "farm-b"):
        record = by_name[name]
        assert record["ok"] and record["node"] == farm["owners"][name], record
        assert record["result"]["device"] == name and record["result"]["median_ms"] > 0
    assert farm["owners"]["farm-a"] != farm["owners"]["farm-b"]
    down, ghost = by_name["farm-down"], by_name["farm-ghost"]
    assert down["node"] == farm["owners"]["farm-down"], "the device's error came back from its node"
    assert down["error"]["reference"] == "device-unreachable"
    assert down["error"]["message"].startswith("farm-down: ")
    assert ghost["node"] is None and ghost["error"]["reference"] == "device-unreachable"
    assert "advertises device:farm-ghost" in ghost["error"]["message"]
    assert """--resources='{"device:farm-ghost": 1}'""" in ghost["error"]["hint"]
    assert [line for line in err.splitlines() if line.startswith("ofa-edge: error: ")] == [
        f"ofa-edge: error: {by_name[n]['error']['message']}" for n in ("farm-down", "farm-ghost")
    ]


def test_devices_check_through_the_farm_address_from_the_environment(
    farm: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``devices check`` with ``$OFA_EDGE_RAY_ADDRESS``: the fingerprint taken on the node."""
    monkeypatch.setenv(RAY_ADDRESS_ENV, farm["address"])
    code = main(["--json", "devices", "check", "farm-a", "farm-ghost", "--inventory", farm["inventory"]])
    devices = json.loads(capsys.readouterr().out)["devices"]
    assert code == 4 and devices["farm-a"]["ok"] and devices["farm-a"]["fingerprint"]["cores"] >= 1
    assert not devices["farm-ghost"]["ok"] and "device:farm-ghost" in devices["farm-ghost"]["error"]


def test_the_farm_needs_token_authentication(
    farm: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``RAY_AUTH_MODE=token`` ofa-edge refuses to use the farm; with a wrong token the
    cluster refuses the connection (a fresh process: Ray caches the token in-process)."""
    argv = ["devices", "check", "farm-a", "--inventory", farm["inventory"], "--ray", farm["address"]]
    monkeypatch.delenv("RAY_AUTH_MODE")
    assert main(argv) == 2
    assert "token authentication is off" in capsys.readouterr().err
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}
    res = subprocess.run(
        [sys.executable, "-m", "ofa_edge.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 4, res.stderr
    assert f"ofa-edge: error: Ray farm {farm['address']}: cannot connect" in res.stderr
    assert "Traceback" not in res.stderr


def test_lut_build_through_the_farm_writes_the_table_on_the_owning_node(
    farm: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """``lut build --ray`` (its work holds the command's class-table turns, which a node gets
    fresh): the table measured by the node that owns the device, written where ``--out`` says."""
    out = farm["folder"] / "farm-b.json"
    argv = ["--json", "lut", "build", "farm-b", "--resolutions", "24", "--passes", "1", "--out", str(out)]
    code = main([*argv, "--inventory", farm["inventory"], "--ray", farm["address"]])
    (record,) = json.loads(capsys.readouterr().out)["devices"]
    assert code == 0 and record["ok"] and record["node"] == farm["owners"]["farm-b"], record
    table = LatencyTable.load(out)
    assert table.device.name == "farm-b" and all(e.median_ms > 0 for e in table.entries[24].values())


def test_every_error_pickles_whole() -> None:
    """An error raised on a node comes back as itself: class, message, hint and fields (also
    ``UnknownName``, whose constructor takes other arguments)."""
    for cls in [
        c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.OfaEdgeError)
    ]:
        err = cls("supernet", "mbv", ["mbv3"]) if cls is errors.UnknownName else cls("what", hint="fix", at=1)
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls and (back.args, str(back), back.fields) == (err.args, str(err), err.fields)
