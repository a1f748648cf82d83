"""Ansible inventories (INI or YAML) read as ofa-edge device tables, since fleets live there.

Every host becomes an SSH device: ``ansible_host`` -> host, ``ansible_user`` -> user,
``ansible_port`` -> port, ``ansible_ssh_private_key_file`` -> key, a ProxyJump in
``ansible_ssh_common_args`` (``-J HOPS`` or ``-o ProxyJump=HOPS``) -> jump; group and ``all``
vars apply (host vars win). Variables prefixed ``ofa_edge_`` set ofa-edge fields (``ofa_edge_runtime``,
``ofa_edge_threads``, ...). Other Ansible variables are ignored. A host's groups (those it is in,
directly or as a child group's member; not ``all``) are its ofa-edge groups (``--group NAME``).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from ofa_edge.errors import ConfigError

_ANSIBLE_KEYS = {
    "ansible_host": "host",
    "ansible_ssh_host": "host",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_ssh_private_key_file": "key",
}


def _to_device(name: str, variables: dict[str, Any], groups: list[str]) -> dict[str, Any]:
    table: dict[str, Any] = {"transport": "ssh", "host": name, "groups": groups}
    for key, value in variables.items():
        if key in _ANSIBLE_KEYS:
            table[_ANSIBLE_KEYS[key]] = value
        elif key == "ansible_ssh_common_args" and (hops := _proxy_jump(name, value)):
            table["jump"] = hops.split(",")
        elif key.startswith("ofa_edge_"):
            table[key.removeprefix("ofa_edge_")] = value
    if "port" in table:
        try:
            table["port"] = int(table["port"])
        except (TypeError, ValueError):
            raise ConfigError(
                f"ansible host {name!r}: ansible_port={table['port']!r} is not a number"
            ) from None
    if "threads" in table and isinstance(table["threads"], str) and table["threads"].isdigit():
        table["threads"] = int(table["threads"])
    return table


def _proxy_jump(name: str, args: Any) -> str | None:
    """The hops of a ProxyJump among ssh arguments (``-J HOPS``, ``-o ProxyJump=HOPS``), if any."""
    try:
        words = shlex.split(str(args))
        if len(words) == 1 and " " in words[0]:  # an INI vars value keeps its quotes
            words = shlex.split(words[0])
    except ValueError as err:
        raise ConfigError(f"ansible host {name!r}: ansible_ssh_common_args: {err}") from None
    for i, word in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        if word.startswith("-J"):
            return word[2:] or following
        if word.startswith("-o"):
            option = re.split(r"[=\s]+", word[2:] or following, maxsplit=1)
            if option[0].lower() == "proxyjump" and len(option) == 2 and option[1].lower() != "none":
                return option[1]
    return None


def _scalar(value: str) -> Any:
    return int(value) if value.isdigit() else value


def _parse_ini(text: str) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]], dict[str, dict]]:
    hosts: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[str]] = {"all": []}
    group_vars: dict[str, dict[str, Any]] = {}
    section, kind = "ungrouped", "hosts"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(f"ansible inventory line {lineno}: unclosed section {line!r}")
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            continue
        try:
            words = shlex.split(line)
        except ValueError as err:
            raise ConfigError(f"ansible inventory line {lineno}: {err}") from None
        if kind == "vars":
            key, eq, value = line.partition("=")
            if not eq:
                raise ConfigError(f"ansible inventory line {lineno}: expected key=value in [{section}:vars]")
            group_vars.setdefault(section, {})[key.strip()] = _scalar(value.strip())
        elif kind == "children":
            groups.setdefault(words[0], [])
            groups.setdefault(section, []).append("@" + words[0])
        else:
            name, pairs = words[0], words[1:]
            variables = hosts.setdefault(name, {})
            for pair in pairs:
                key, eq, value = pair.partition("=")
                if not eq:
                    raise ConfigError(f"ansible inventory line {lineno}: {pair!r} is not key=value")
                variables[key] = _scalar(value)
            groups.setdefault(section, []).append(name)
    return hosts, groups, group_vars


def _parse_yaml(text: str) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]], dict[str, dict]]:
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"ansible inventory: not valid YAML ({str(err).splitlines()[0]})") from None
    hosts: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[str]] = {}
    group_vars: dict[str, dict[str, Any]] = {}

    def walk(group: str, body: Any) -> None:
        body = body or {}
        if not isinstance(body, dict):
            raise ConfigError(f"ansible inventory: group {group!r} must be a mapping")
        groups.setdefault(group, [])
        for name, variables in (body.get("hosts") or {}).items():
            hosts.setdefault(name, {}).update(variables or {})
            groups[group].append(name)
        group_vars.setdefault(group, {}).update(body.get("vars") or {})
        for child, child_body in (body.get("children") or {}).items():
            groups[group].append("@" + child)
            walk(child, child_body)

    if not isinstance(data, dict):
        raise ConfigError("ansible inventory: expected groups at the top level")
    for group, body in data.items():
        walk(group, body)
    return hosts, groups, group_vars


def parse_ansible(file: Path, text: str) -> dict[str, dict[str, Any]]:
    """Device tables from an Ansible inventory (YAML by extension or content, else INI)."""
    is_yaml = file.suffix in (".yml", ".yaml") or text.lstrip().startswith(("all:", "---"))
    hosts, groups, group_vars = (_parse_yaml if is_yaml else _parse_ini)(text)

    def ancestors(host: str) -> list[str]:
        """Groups containing ``host``, outermost first (so inner group vars win)."""
        found: list[str] = []

        def visit(group: str, trail: list[str]) -> None:
            for member in groups.get(group, []):
                if member == host:
                    found.extend(g for g in [*trail, group] if g not in found)
                elif member.startswith("@") and member[1:] not in trail:
                    visit(member[1:], [*trail, group])

        for top in groups:
            visit(top, [])
        return found

    devices = {}
    for name, host_vars in hosts.items():
        merged: dict[str, Any] = dict(group_vars.get("all", {}))
        member_of = ancestors(name)
        for group in member_of:
            merged.update(group_vars.get(group, {}))
        merged.update(host_vars)
        devices[name] = _to_device(name, merged, [g for g in member_of if g != "all"])
    return devices
