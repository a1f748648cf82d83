"""A device's backend: the runtime, and the execution providers or delegate it runs models on.

A Jetson is bought for its GPU and a phone's fastest path is its GPU or NPU delegate, so which
part of the chip a model runs on is part of every measurement: tables, bench results and
deployment manifests record the backend (:meth:`Backend.to_dict`), and a table is never used
with another backend. The inventory's ``backend`` table (``ofa_edge.devices.inventory``) reads
into a :class:`Backend`; ``runtime = "..."`` alone means that runtime's default backend (the
CPU: onnxruntime's ``CPUExecutionProvider``, TFLite with XNNPACK).

Silent fallback is an error: a model that does not run wholly on the backend's accelerator (the
first onnxruntime provider unless it is the CPU's; the ``gpu`` or ``nnapi`` delegate) is refused
with its coverage (:class:`Placement`) unless the backend sets ``allow_partial``; the measurement
then records its placement.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ofa_edge.errors import ConfigError, PlacementError

CPU_PROVIDER = "CPUExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
#: TFLite delegates: ``xnnpack`` (TFLite's default CPU path), ``none`` (TFLite's builtin CPU
#: kernels only), and the accelerators ``gpu`` and ``nnapi``.
DELEGATES = ("xnnpack", "none", "gpu", "nnapi")
ACCELERATOR_DELEGATES = ("gpu", "nnapi")
#: The precision the backend may compute float tensors in (the model file's own precision,
#: fp32 or int8, is recorded beside it): fp16 lets a GPU delegate, NNAPI or TensorRT halve it.
PRECISIONS = ("fp32", "fp16", "int8")
#: The fields of an inventory ``backend`` table, per runtime (a runtime of its own, such as
#: TensorRT's ``trtexec``, adds its entry here and its fields to :class:`Backend`).
BACKEND_FIELDS: dict[str, frozenset[str]] = {
    "onnxruntime": frozenset({"runtime", "providers", "precision", "allow_partial"}),
    "tflite": frozenset({"runtime", "delegate", "library", "options", "precision", "allow_partial"}),
    # TensorRT's own tool: engines built on the device in ``precision``; it runs whole models only.
    "trtexec": frozenset({"runtime", "precision"}),
}
#: onnxruntime TensorRT options that ``precision`` sets: the inventory names the precision once.
_TRT_PRECISION_OPTIONS = {"fp16": "trt_fp16_enable", "int8": "trt_int8_enable"}
#: The GPU delegate library the Python agent loads unless the backend names one.
GPU_DELEGATE_LIBRARY = "libtensorflowlite_gpu_delegate.so"

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Provider:
    """One onnxruntime execution provider and its options (onnxruntime's names, e.g.
    ``TensorrtExecutionProvider`` with ``trt_engine_cache_enable``)."""

    name: str
    options: tuple[tuple[str, Scalar], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """As the inventory writes it: ``{"name": NAME, OPTION: VALUE, ...}``."""
        return {"name": self.name, **dict(self.options)}


@dataclass(frozen=True)
class Backend:
    """How a device runs models: its runtime and, per runtime, its providers or delegate."""

    runtime: str
    providers: tuple[Provider, ...] = ()  # onnxruntime, in order of preference
    delegate: str | None = None  # tflite
    library: str | None = None  # tflite gpu/nnapi in the Python agent: the delegate's .so
    options: tuple[tuple[str, Scalar], ...] = ()  # tflite: the delegate library's own options
    precision: str = "fp32"
    allow_partial: bool = False

    @property
    def target(self) -> str | None:
        """The accelerator every node must run on, or None for a CPU backend (no check)."""
        if self.runtime == "onnxruntime" and self.providers and self.providers[0].name != CPU_PROVIDER:
            return self.providers[0].name
        if self.runtime == "tflite" and self.delegate in ACCELERATOR_DELEGATES:
            return self.delegate
        return None

    def ort_providers(self) -> list[list[Any]]:
        """onnxruntime's ``providers=`` argument as ``[name, options]`` pairs, ``precision``
        set as TensorRT's own option."""
        pairs = []
        for p in self.providers:
            options = dict(p.options)
            if p.name == TENSORRT_PROVIDER and self.precision in _TRT_PRECISION_OPTIONS:
                options[_TRT_PRECISION_OPTIONS[self.precision]] = True
            pairs.append([p.name, options])
        return pairs

    def request(self) -> dict[str, Any]:
        """What the device agent needs to build a session on this backend (the stock GPU
        delegate library's ``precision_loss_allowed`` from ``precision``)."""
        options = dict(self.options)
        if self.delegate == "gpu" and self.library is None:
            options.setdefault("precision_loss_allowed", int(self.precision == "fp16"))
        return {
            "runtime": self.runtime,
            "providers": self.ort_providers(),
            "delegate": self.delegate,
            "library": self.library or (GPU_DELEGATE_LIBRARY if self.delegate == "gpu" else None),
            "options": options,
            "precision": self.precision,
            "target": self.target,
            "allow_partial": self.allow_partial,
        }

    def describe(self) -> str:
        """One line for people: ``onnxruntime [TensorrtExecutionProvider, ...] fp16``."""
        where = (
            f"[{', '.join(p.name for p in self.providers)}]"
            if self.runtime == "onnxruntime"
            else f"delegate {self.delegate}"
        )
        partial = ", partial allowed" if self.allow_partial else ""
        return f"{self.runtime} {where} {self.precision}{partial}"

    def to_dict(self) -> dict[str, Any]:
        """The backend as tables, bench results and manifests record it (and compare it)."""
        out: dict[str, Any] = {"runtime": self.runtime}
        if self.runtime == "onnxruntime":
            out["providers"] = [p.to_dict() for p in self.providers]
        if self.runtime == "tflite":
            out.update(delegate=self.delegate, library=self.library, options=dict(self.options))
        return {**out, "precision": self.precision, "allow_partial": self.allow_partial}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Backend:
        """The inverse of :meth:`to_dict` (the recorded form is also a valid inventory table); a
        runtime ofa-edge does not drive (a table imported from MIT's files) has only its name."""
        if data["runtime"] not in BACKEND_FIELDS:
            return default_backend(data["runtime"])
        return parse_backend("recorded", data, data["runtime"])


def default_backend(runtime: str) -> Backend:
    """The backend ``runtime = "..."`` alone means, and what tables before backends recorded:
    the CPU (onnxruntime's CPU provider; TFLite with its default XNNPACK delegate)."""
    if runtime == "onnxruntime":
        return Backend(runtime, providers=(Provider(CPU_PROVIDER),))
    if runtime == "tflite":
        return Backend(runtime, delegate="xnnpack")
    return Backend(runtime)


def _scalars(name: str, what: str, table: Any) -> tuple[tuple[str, Scalar], ...]:
    if not isinstance(table, dict) or not all(isinstance(v, Scalar) for v in table.values()):
        raise ConfigError(f"device {name!r}: {what} must be a table of strings, numbers or booleans")
    return tuple(sorted(table.items()))


def _provider(name: str, value: Any) -> Provider:
    """``"CUDAExecutionProvider"`` or ``{name = "TensorrtExecutionProvider", OPTION = VALUE...}``."""
    options = dict(value) if isinstance(value, dict) else {}
    provider = options.pop("name", None) if isinstance(value, dict) else value
    if not isinstance(provider, str) or not provider.endswith("ExecutionProvider"):
        raise ConfigError(
            f"device {name!r}: backend provider {value!r} is not an onnxruntime execution provider",
            hint='name it as onnxruntime does: "CUDAExecutionProvider", or {name = "...", OPTION = VALUE}',
        )
    taken = sorted(set(options) & set(_TRT_PRECISION_OPTIONS.values()))
    if taken:
        raise ConfigError(
            f"device {name!r}: {provider} option(s) {taken} are set by the backend's precision",
            hint='use precision = "fp16" or "int8" instead',
        )
    return Provider(provider, _scalars(name, f"{provider}'s options", options))


def _one_of(name: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"device {name!r}: backend {key}={value!r} is not one of {list(choices)}")
    return str(value)


def parse_backend(name: str, table: Any, runtime: str) -> Backend:
    """Validate a device's ``backend`` table (``runtime`` from the table, else the device's)."""
    if not isinstance(table, dict):
        raise ConfigError(
            f"device {name!r}: backend must be a table", hint='e.g. { runtime = "tflite", delegate = "gpu" }'
        )
    runtime = _one_of(name, "runtime", table.get("runtime", runtime), tuple(BACKEND_FIELDS))
    unknown = sorted(set(table) - BACKEND_FIELDS[runtime])
    if unknown:
        raise ConfigError(
            f"device {name!r}: unknown backend field(s) {unknown} for runtime {runtime!r}",
            hint=f"allowed: {', '.join(sorted(BACKEND_FIELDS[runtime]))}",
        )
    precision = _one_of(name, "precision", table.get("precision", "fp32"), PRECISIONS)
    allow_partial = table.get("allow_partial", False)
    if not isinstance(allow_partial, bool):
        raise ConfigError(f"device {name!r}: backend allow_partial must be true or false")
    base = default_backend(runtime)
    if runtime == "onnxruntime":
        providers = table.get("providers", [CPU_PROVIDER])
        if not isinstance(providers, list) or not providers:
            raise ConfigError(f"device {name!r}: backend providers must be a non-empty list, first preferred")
        backend = Backend(runtime, providers=tuple(_provider(name, p) for p in providers))
        needs = "the first provider to be TensorrtExecutionProvider"
        ok = precision == "fp32" or backend.providers[0].name == TENSORRT_PROVIDER
    elif runtime == "trtexec":
        backend, needs, ok = base, "", True
    else:
        delegate = _one_of(name, "delegate", table.get("delegate", base.delegate), DELEGATES)
        library = table.get("library")
        if library is not None and (not isinstance(library, str) or delegate not in ACCELERATOR_DELEGATES):
            raise ConfigError(f"device {name!r}: backend library must be the path of a gpu or nnapi delegate")
        options = _scalars(name, "backend options", table.get("options", {}))
        backend = Backend(runtime, delegate=delegate, library=library, options=options)
        needs, ok = (
            "the gpu or nnapi delegate",
            precision in ("fp32", "fp16") and (precision == "fp32" or delegate in ACCELERATOR_DELEGATES),
        )
    if not ok:
        raise ConfigError(f"device {name!r}: backend precision {precision!r} needs {needs}")
    return replace(backend, precision=precision, allow_partial=allow_partial)


@dataclass(frozen=True)
class Placement:
    """Where a model's nodes ran: how many of them on the backend's accelerator (``target``).

    ``nodes`` counts the nodes as the runtime reports them (a TensorRT-fused subgraph is one;
    None where the runtime does not say), ``partitions`` the accelerator's kernels or delegated
    subgraphs, ``by_provider`` onnxruntime's nodes per provider. ``whole``: every node ran there.
    """

    target: str
    whole: bool
    nodes: int | None = None
    on_target: int | None = None
    partitions: int | None = None
    by_provider: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Placement:
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "whole": self.whole,
            "nodes": self.nodes,
            "on_target": self.on_target,
            "partitions": self.partitions,
            "by_provider": dict(self.by_provider),
        }

    def describe(self) -> str:
        """``9 of 12 nodes on gpu (3 partitions)``, as one line for an error or a report."""
        if self.on_target is not None:
            text = f"{self.on_target}{'' if self.nodes is None else f' of {self.nodes}'} nodes"
        else:
            text = "all nodes" if self.whole else "part of the nodes"
        rest = [f"{self.partitions} partitions"] if self.partitions is not None else []
        rest += [f"{k}: {v}" for k, v in self.by_provider.items()]
        return f"{text} on {self.target}" + (f" ({', '.join(rest)})" if rest else "")


def refused(device: str, model: str, placement: Placement) -> PlacementError:
    """The error for a model not wholly on the accelerator where partial placement is not allowed."""
    return PlacementError(
        f"{device}: {model} runs {placement.describe()}, not wholly there",
        hint="choose a backend that runs every op of it, or set allow_partial = true in the device's "
        "backend to measure it anyway (results and tables then record its placement)",
        placement=placement.to_dict(),
    )
