"""devices.toml and Ansible inventories: parsed into typed specs, bad input named clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ofa_edge.devices.inventory import load_inventory, select
from ofa_edge.errors import ConfigError, UnknownName


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_devices_and_implicit_local(tmp_path: Path) -> None:
    inv = _write(
        tmp_path,
        "devices.toml",
        """
[devices.pi4]
transport = "ssh"
host = "10.0.0.40"
user = "pi"
key = "keys/pi"
threads = 4
cpus = [2, 3]

[devices.phone]
transport = "adb"
serial = "R58M123"
runtime = "tflite"
""",
    )
    devices = load_inventory(inv)
    assert set(devices) == {"pi4", "phone", "local"}
    pi = devices["pi4"]
    assert pi.ssh is not None and pi.ssh.port == 22 and pi.ssh.key == tmp_path / "keys/pi"
    assert pi.ssh.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert pi.threads == 4 and pi.cpus == (2, 3)
    assert devices["phone"].adb is not None and devices["phone"].adb.serial == "R58M123"
    assert devices["local"].transport == "local"


def test_inventory_from_env_and_local_redefined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inv = _write(tmp_path, "fleet.toml", '[devices.local]\ntransport = "local"\nthreads = 2\n')
    monkeypatch.setenv("OFA_EDGE_INVENTORY", str(inv))
    assert load_inventory()["local"].threads == 2
    monkeypatch.setenv("OFA_EDGE_INVENTORY", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="missing.toml does not exist"):
        load_inventory()


def test_missing_default_file_means_local_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OFA_EDGE_INVENTORY", raising=False)
    assert list(load_inventory()) == ["local"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[devices.a]\ntransport = "ssh"\nhost = "h"\nhots = 1\n', r"unknown field\(s\) \['hots'\]"),
        ('[devices.a]\ntransport = "ssh"\nuser = "pi"\n', "ssh needs a host"),
        ('[devices.a]\nhost = "h"\nport = 70000\n', "port=70000 must be an integer in 1..65535"),
        ('[devices.a]\nhost = "h"\nport = "22"\n', "port='22' must be an integer"),
        ('[devices.a]\ntransport = "bluetooth"\n', "transport='bluetooth' is not one of"),
        ('[devices.a]\nruntime = "tensorrt"\n', "runtime='tensorrt' is not one of"),
        ("[devices.a]\nthreads = 0\n", "threads=0 must be an integer"),
        ("[devices.a]\nslowdown = 0\n", "slowdown=0 must be a number in 0.01..1000"),
        ('[devices.a]\nslowdown = "slow"\n', "slowdown='slow' must be a number"),
        ("[devices.a\n", "not valid TOML"),
        ('[hosts.a]\nhost = "h"\n', "unknown top-level key"),
        ('[devices.a]\ngroups = "pis"\n', "groups must be a list of group names"),
        ('[devices.a]\ngroups = ["pis", ""]\n', "groups must be a list of group names"),
    ],
)
def test_bad_toml_is_named(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_inventory(_write(tmp_path, "devices.toml", body))


def test_ansible_ini(tmp_path: Path) -> None:
    inv = _write(
        tmp_path,
        "hosts",
        """
[pis]
pi-a ansible_host=10.0.0.5 ansible_user=pi
pi-b ansible_host=10.0.0.6 ansible_port=2222 ansible_user=admin

[pis:vars]
ansible_ssh_private_key_file=/keys/fleet
ofa_edge_threads=4

[jetsons]
nano ansible_host=10.0.0.9

[all:vars]
ansible_user=ubuntu
""",
    )
    devices = load_inventory(inv)
    assert [d.groups for d in devices.values()] == [("pis",), ("pis",), ("jetsons",), ()]  # local: none
    a, b, nano = devices["pi-a"], devices["pi-b"], devices["nano"]
    assert a.ssh is not None and a.ssh.host == "10.0.0.5" and a.ssh.user == "pi"
    assert a.ssh.key == Path("/keys/fleet") and a.threads == 4
    assert b.ssh is not None and b.ssh.port == 2222 and b.ssh.user == "admin"
    assert nano.ssh is not None and nano.ssh.user == "ubuntu" and nano.threads == 1


def test_ansible_yaml(tmp_path: Path) -> None:
    inv = _write(
        tmp_path,
        "inventory.yml",
        """
all:
  vars:
    ansible_user: ubuntu
  children:
    pis:
      vars:
        ansible_user: pi
      hosts:
        pi-a:
          ansible_host: 10.0.0.5
          ansible_port: 2200
    phones:
      hosts:
        jet:
          ansible_host: 10.0.0.7
          ofa_edge_runtime: tflite
""",
    )
    devices = load_inventory(inv)
    assert (devices["pi-a"].groups, devices["jet"].groups) == (("pis",), ("phones",))  # not "all"
    assert devices["pi-a"].ssh.user == "pi" and devices["pi-a"].ssh.port == 2200  # type: ignore[union-attr]
    assert devices["jet"].ssh.user == "ubuntu" and devices["jet"].runtime == "tflite"  # type: ignore[union-attr]


def test_groups_select_devices(tmp_path: Path) -> None:
    """``--group`` by the inventory's groups: TOML ``groups`` lists, Ansible groups and their
    children; names first, each device once, unknown names and groups named with suggestions."""
    toml = _write(
        tmp_path,
        "devices.toml",
        '[devices.p1]\ngroups = ["pis", "lab"]\n[devices.p2]\ngroups = ["pis"]\n'
        '[devices.j1]\ngroups = ["lab"]\n',
    )
    devices = load_inventory(toml)
    assert [d.name for d in select(devices, [], ["pis"])] == ["p1", "p2"]
    assert [d.name for d in select(devices, ["j1", "p2"], ["pis", "lab"])] == ["j1", "p2", "p1"]
    with pytest.raises(UnknownName, match="unknown device group 'pi'.*did you mean pis"):
        select(devices, [], ["pi"])
    with pytest.raises(UnknownName, match="unknown device 'p3'"):
        select(devices, ["p3"], [])

    ini = _write(
        tmp_path,
        "hosts",
        "[pis]\npi-a\npi-b\n\n[jetsons]\nnano\n\n[edge:children]\npis\njetsons\n\n[lab]\npi-b\n",
    )
    devices = load_inventory(ini)
    assert [d.name for d in select(devices, [], ["edge"])] == ["pi-a", "pi-b", "nano"]
    assert [d.name for d in select(devices, [], ["lab"])] == ["pi-b"]
    assert set(devices["pi-b"].groups) == {"pis", "edge", "lab"}
