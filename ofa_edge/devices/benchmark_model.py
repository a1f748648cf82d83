"""TFLite's ``benchmark_model``: the command line, and a tolerant parser of what it prints.

Phones without Python are measured with this stock tool (users bring the binary). Its output
changed over the years: TensorFlow 2.0 prints bare lines, statistics without percentiles and
``Average inference timings in us: Warmup: .., Init: .., no stats: ..``; later builds prefix
``INFO:`` (or a logcat tag), LiteRT adds ``p5= median= p95=`` to every statistics line, and
large values may come in scientific notation. All of it is in microseconds; the parsed result
is in milliseconds and keeps the raw text. The tool logs to stdout, errors to stderr.

A delegate's coverage (:func:`parse_placement`) comes from the tool's verdict (LiteRT:
``Explicitly applied GPU delegate, and the model graph will be completely|partially executed by
the delegate [w/ K delegate kernels].``, or ``Though GPU delegate is explicitly applied, the
model graph will not be executed by the delegate.``) and the interpreter's ``Replacing N out of M
node(s) with delegate (NAME) node, yielding P partitions ...`` (older Android builds: ``Replacing
N node(s) ...``, without M; P counts every node subset, so 1 means the whole graph), whichever
the build prints; a delegate that no line says took a node took none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ofa_edge.devices.backend import Backend, Placement
from ofa_edge.errors import BenchmarkOutputError, ConfigError

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"([A-Za-z][\w\- ]*?)\s*=\s*({_NUM})")
_STATS = re.compile(r"\bcount=\d+")
_RUN_HEADER = re.compile(r"Running benchmark for")
_SUMMARY = re.compile(r"inference timings in us:(.*)", re.IGNORECASE)
_SUMMARY_FIELDS = {
    "init": "init_ms",
    "first inference": "first_inference_ms",
    "warmup (avg)": "warmup_avg_ms",
    "warmup": "warmup_avg_ms",  # old builds
    "inference (avg)": "inference_avg_ms",
    "no stats": "inference_avg_ms",  # old builds
}
_STAT_FIELDS = ("count", "first", "curr", "min", "max", "avg", "std")
# Memory lines of the various builds -> the prefix of their keys in ``memory_mb``.
_MEMORY = (
    (re.compile(r"footprint delta from the start of the tool \(MB\):(.*)"), "delta"),
    (re.compile(r"Peak memory footprint \(MB\):(.*)"), "peak"),
    (re.compile(r"peak memory footprint \(MB\) via periodic monitoring:(.*)"), "peak_periodic"),
    (re.compile(r"\[Init Phase\] - Memory usage:(.*)"), "init_phase"),
    (re.compile(r"\[Overall\] - Memory usage:(.*)"), "overall_phase"),
)


@dataclass(frozen=True)
class BenchmarkModelResult:
    """One ``benchmark_model`` run: the measured loop's statistics (ms) and the summary line."""

    count: int
    first_ms: float
    curr_ms: float
    min_ms: float
    max_ms: float
    avg_ms: float
    std_ms: float
    raw: str = field(repr=False)
    percentiles_ms: dict[str, float] = field(default_factory=dict)  # e.g. p5, median, p95
    init_ms: float | None = None
    first_inference_ms: float | None = None
    warmup_avg_ms: float | None = None
    inference_avg_ms: float | None = None
    memory_mb: dict[str, float] = field(default_factory=dict)  # e.g. delta_init, peak_overall

    @property
    def median_ms(self) -> float | None:
        """The measured loop's median, or None when this build prints no percentiles (never the
        mean in its place: the caller decides, and says, if the mean stands in for it)."""
        return self.percentiles_ms.get("median", self.percentiles_ms.get("p50"))


def parse_benchmark_model(text: str) -> BenchmarkModelResult:
    """Parse ``benchmark_model`` output (stdout and stderr together).

    The statistics come from the last ``count=...`` line (the measured loop, after warm-up).

    Raises:
        BenchmarkOutputError: no timing line, or the tool stopped before the measured loop ended.

    Example:
        >>> parse_benchmark_model("count=50 first=9100 curr=8000 min=7900 max=9100 avg=8200 std=310").avg_ms
        8.2
    """
    lines = text.splitlines()
    stats = [line for line in lines if _STATS.search(line)]
    if not stats:
        raise BenchmarkOutputError(
            f"benchmark_model output has no `count=... avg=...` timing line{_last_lines(lines)}",
            hint="run the same command by hand: an error above the summary usually names the cause "
            "(missing model file, unsupported op, wrong binary for the CPU)",
        )
    if len(stats) < sum(1 for line in lines if _RUN_HEADER.search(line)):
        raise BenchmarkOutputError(
            f"benchmark_model stopped before its measured loop finished{_last_lines(lines)}",
            hint="the tool crashed or was killed mid-run; check the device's memory and logcat",
        )
    pairs = {name.strip(): float(value) for name, value in _PAIR.findall(stats[-1])}
    avg = pairs.get("avg", pairs.get("curr"))
    if avg is None:
        raise BenchmarkOutputError(
            f"benchmark_model timing line has no avg= or curr= value: {stats[-1].strip()!r}",
            hint="the measured loop ran no inference; check --num_runs and --min_secs",
        )
    # An "all same" line is just `count=N curr=V(all same)`: every statistic is V, spread 0.
    return BenchmarkModelResult(
        count=int(pairs["count"]),
        first_ms=_ms(pairs.get("first", avg)),
        curr_ms=_ms(pairs.get("curr", avg)),
        min_ms=_ms(pairs.get("min", avg)),
        max_ms=_ms(pairs.get("max", avg)),
        avg_ms=_ms(avg),
        std_ms=_ms(pairs.get("std", 0.0)),
        raw=text,
        percentiles_ms={k: _ms(v) for k, v in pairs.items() if k not in _STAT_FIELDS},
        **_summary(lines),
        memory_mb=_memory(lines),
    )


def _ms(microseconds: float) -> float:
    return microseconds / 1000.0


def _summary(lines: list[str]) -> dict[str, float]:
    """The ``Inference timings in us:`` line's fields, in ms, by result field name."""
    found: dict[str, float] = {}
    for line in lines:
        match = _SUMMARY.search(line)
        if match is None:
            continue
        for item in match.group(1).split(","):
            label, _, value = item.rpartition(":")
            key = _SUMMARY_FIELDS.get(label.strip().lower())
            number = re.fullmatch(_NUM, value.strip())
            if key is not None and number is not None:
                found[key] = _ms(float(number.group()))
    return found


def _memory(lines: list[str]) -> dict[str, float]:
    """Memory figures (MB) from whichever memory lines this build printed."""
    found: dict[str, float] = {}
    for line in lines:
        for pattern, prefix in _MEMORY:
            match = pattern.search(line)
            if match is None:
                continue
            rest = match.group(1)
            pairs = _PAIR.findall(rest)
            for name, value in pairs:
                found[prefix + "_" + re.sub(r"\W+", "_", name.strip()).lower()] = float(value)
            lone = re.search(_NUM, rest)
            if not pairs and lone is not None:
                found[prefix] = float(lone.group())
    return found


#: Each delegate's name in the tool's verdict line and its kernel's name in the interpreter's.
_DELEGATE_NAMES = {"gpu": ("GPU", "TfLiteGpuDelegate"), "nnapi": ("NNAPI", "TfLiteNnapiDelegate")}
_VERDICT = re.compile(
    r"(?:Explicitly applied (\w+) delegate, and the model graph will be (completely|partially) executed"
    r" by the delegate(?: w/ (\d+) delegate kernels)?|Though (\w+) delegate is explicitly applied)"
)
_REPLACING = re.compile(
    r"Replacing (\d+) (?:out of (\d+) )?node\(s\) with delegate \(([^)]*)\) node, yielding (\d+) partitions"
)


def parse_placement(text: str, delegate: str) -> Placement:
    """How much of the graph the ``gpu`` or ``nnapi`` delegate took, from the tool's output (the
    module docstring lists the lines read).

    Example:
        >>> parse_placement("Replacing 6 out of 8 node(s) with delegate (TfLiteGpuDelegateV2) node, "
        ...                 "yielding 2 partitions for the whole graph.", "gpu").describe()
        '6 of 8 nodes on gpu'
    """
    tool_name, kernel = _DELEGATE_NAMES[delegate]
    nodes: int | None = None
    taken: int | None = None
    subsets: int | None = None
    for n, m, name, p in _REPLACING.findall(text):
        if name.startswith(kernel):
            taken, nodes, subsets = int(n), int(m) if m else None, int(p)
    verdict = next((v for v in _VERDICT.findall(text) if tool_name in (v[0], v[3])), None)
    partitions: int | None
    if verdict is not None and verdict[3]:  # "Though ... will not be executed by the delegate"
        whole, taken, partitions = False, 0, 0
    elif verdict is not None:
        whole = verdict[1] == "completely"
        partitions = 1 if whole else int(verdict[2]) if verdict[2] else None
    else:
        taken = taken or 0  # no line says the delegate took a node: it took none
        whole = taken > 0 and (taken == nodes if nodes is not None else subsets == 1)
        partitions = 1 if whole else None
    return Placement(delegate, whole, nodes, taken, partitions)


def delegate_flags(backend: Backend) -> list[str]:
    """The tool's flags for a TFLite backend: the accelerator delegate (its fp16 switch from
    ``precision``) with XNNPACK off, so nodes the accelerator leaves run on the builtin kernels,
    as in the Python agent; or XNNPACK on (``xnnpack``) or off (``none``)."""
    fp16 = "true" if backend.precision == "fp16" else "false"
    if backend.delegate == "gpu":
        return ["--use_gpu=true", f"--gpu_precision_loss_allowed={fp16}", "--use_xnnpack=false"]
    if backend.delegate == "nnapi":
        return ["--use_nnapi=true", f"--nnapi_allow_fp16={fp16}", "--use_xnnpack=false"]
    return [f"--use_xnnpack={'false' if backend.delegate == 'none' else 'true'}"]


def _last_lines(lines: list[str], n: int = 3) -> str:
    tail = [line.strip() for line in lines if line.strip()][-n:]
    return f" (last lines: {' | '.join(tail)})" if tail else " (it printed nothing)"


def benchmark_model_argv(
    binary: str,
    graph: str,
    threads: int,
    runs: int,
    warmup: int,
    min_secs: float,
    backend: Backend,
    cpus: Sequence[int] | None = None,
) -> list[str]:
    """The ``benchmark_model`` command line on ``backend`` (:func:`delegate_flags`); with
    ``cpus``, pinned by ``taskset`` to them.

    The CPU set is given as a hex mask (``taskset 30 ...``), which both util-linux and
    Android's toybox ``taskset`` accept (toybox has no ``-c``).

    Example:
        >>> benchmark_model_argv("bm", "m.tflite", 1, 50, 10, 1, default_backend("tflite"), [4, 5])
        ['taskset', '30', 'bm', '--graph=m.tflite', '--num_threads=1', ...]
    """
    for name, value, low in (("threads", threads, 1), ("runs", runs, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"benchmark_model: {name}={value!r} must be an integer >= {low}")
    if min_secs < 0:
        raise ConfigError(f"benchmark_model: min_secs={min_secs!r} must be >= 0")
    argv = [
        binary,
        f"--graph={graph}",
        f"--num_threads={threads}",
        f"--num_runs={runs}",
        f"--warmup_runs={warmup}",
        f"--min_secs={min_secs:g}",
        *delegate_flags(backend),
    ]
    if cpus is None:
        return argv
    if not cpus or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in cpus):
        raise ConfigError(f"benchmark_model: cpus={list(cpus)!r} must be CPU numbers >= 0")
    return ["taskset", format(sum(1 << c for c in set(cpus)), "x"), *argv]
