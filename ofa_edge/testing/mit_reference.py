"""Import MIT's once-for-all (PyPI ``ofa``) for equivalence tests.

Its package imports torchvision (and other modules it does not declare) at import time, only for
data loading we never use; torchvision's PyPI wheel does not import beside this torch build. We
satisfy those imports with inert placeholder modules before importing, and use only its network
and counting code, which depends on torch alone.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_STUBBED: list[str] = []


class _Placeholder(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})


def _stub(name: str) -> None:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        mod_name = ".".join(parts[:i])
        if mod_name not in sys.modules:
            module = _Placeholder(mod_name)
            module.__path__ = []
            sys.modules[mod_name] = module
            _STUBBED.append(mod_name)
            if i > 1:
                setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], module)


def import_mit(module: str) -> types.ModuleType:
    """Import ``module`` from MIT's ofa package, stubbing missing third-party imports."""
    for _ in range(20):
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or err.name.split(".")[0] == "ofa":
                raise
            _stub(err.name)
            for key in [k for k in sys.modules if k == "ofa" or k.startswith("ofa.")]:
                del sys.modules[key]
    raise ImportError(f"could not import {module} (stubbed {_STUBBED})")
