"""Subnet costs (latency per device, MACs, params, file size, peak activations) for whole populations.

Every cost of a subnet decomposes the same way over the ops its family lists
(:meth:`FamilySpec.ops`): one term per op it runs, and each op position's op depends on the
resolution and a few gene columns only (the genome's :class:`Position` list: an MBConv slot on
its kernel and expand, a ResNet bottleneck on its widths and expand). So each cost is
precomputed once as ``values [R, V]`` over the genome's op *variants* (every position with every
choice of its columns), and a population's cost is a gather of its variant ids plus a masked
sum (peak memory: a masked max). Sums run in op order (``np.cumsum``), so latencies equal
:meth:`LatencyTable.predict` bit for bit; counts equal :func:`ofa_edge.supernet.counting.count`.

Definitions:

- **file size** (fp32): 4 bytes per parameter. The ONNX export of 8 subnets (CIFAR-10 w0.5 and
  w1.0 spaces) measured within 0.3 % of it (-51 KB .. +9 KB: BN folding removes a little, the
  graph adds a little).
- **peak activation memory** (fp32, batch 1): the largest, over layers, of the bytes of the
  layer's input plus its output, plus, inside a residual block, the block input kept for the
  add (each op's figure is its family's :meth:`FamilySpec.op_peak`). Layers: first conv; per
  block the 1x1 expansion, the depthwise conv and the 1x1 projection (SE works on a pooled
  vector and is left out); the ops after the blocks, each from its input to its output. It is
  the standard "largest live tensors" lower bound of what an inference runtime must hold;
  runtimes add their own workspace on top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ofa_edge.lut.keys import Op
from ofa_edge.lut.table import Calibration, Entry, LatencyTable, LutError, apply_calibration
from ofa_edge.search.population import Genome, Population
from ofa_edge.supernet.family import FamilySpec

FP32_BYTES = 4


@dataclass(frozen=True)
class CostKey:
    """Which cost: a metric ("latency", "energy", "macs", "params", "file_size", "peak_memory")
    and, for latency and energy, the device it is predicted on. Costs are keyed by it; ``label``
    is for display."""

    metric: str
    device: str | None = None

    @property
    def label(self) -> str:
        """For messages, plots and CSV columns only: "latency on NAME", or the metric alone."""
        return f"{self.metric} on {self.device}" if self.device else self.metric


@dataclass
class CostModel:
    """One metric of a subnet as a table of its genome's op variants (see the module docstring)."""

    key: CostKey
    unit: str
    genome: Genome
    values: np.ndarray  # [R, V]
    reduce: str = "sum"  # "sum" (in op order) or "max"
    # value = apply_calibration(calibration, reduced, n_ops) (a table's calibration; n_ops: the
    # ops run); None: the reduced value itself.
    calibration: Calibration | None = None
    _min: tuple[float, Population] | None = field(default=None, repr=False)

    def evaluate(self, pop: Population, active: np.ndarray) -> np.ndarray:
        """The cost of every member; ``active`` is the genome's run mask of its depths."""
        ids = self.genome.variant_ids(pop, active)
        runs = ids >= 0
        cols = np.where(runs, self.values[pop.r[:, None], ids], 0)
        total = np.cumsum(cols, axis=1)[:, -1] if self.reduce == "sum" else cols.max(axis=1)
        if self.calibration is None:
            return total
        return apply_calibration(self.calibration, total, runs.sum(axis=1))

    def minimum(self, genome: Genome) -> tuple[float, Population]:
        """The exact smallest value any subnet reaches, and one subnet reaching it.

        For given depths (so a given op count) the value grows with the ops' sum (or max), so at
        every resolution and every combination of the shared columns (widths) each free column
        (read by one op only) takes its cheapest choice, and every depth combination is then
        evaluated on those, in op order as :meth:`evaluate` does. (Calibrations are fitted
        increasing in the op sum, see :func:`ofa_edge.lut.validate.fit_calibration`.)
        """
        if self._min is None:
            depths = genome.combinations([("d", c) for c in range(len(genome.n_choices["d"]))])
            runs = genome.position_runs(genome.active(depths.d))  # [D, n_pos]
            best: tuple[float, Population] | None = None
            for r in range(len(genome.resolutions)):
                shapes = genome.combinations(genome.shared_columns())
                shapes.r[:] = r
                genome.cheapest_free(shapes, self.values[r])
                per_op = self.values[r][genome.all_variant_ids(shapes)]  # [S, n_pos]
                cols = np.where(runs[None], per_op[:, None, :], 0)  # [S, D, n_pos]
                total = np.cumsum(cols, axis=2)[..., -1] if self.reduce == "sum" else cols.max(axis=2)
                if self.calibration is not None:
                    total = apply_calibration(self.calibration, total, runs.sum(axis=1)[None, :])
                s, d = np.unravel_index(int(total.argmin()), total.shape)
                if best is None or total[s, d] < best[0]:
                    member = shapes.take(np.array([s]))
                    member.genes["d"] = depths.d[[d]]
                    best = (float(total[s, d]), member)
            assert best is not None  # a genome has at least one resolution
            self._min = best
        return self._min


def _variant_values(genome: Genome, per_op: Callable[[int, list[Op]], np.ndarray]) -> np.ndarray:
    """``values [R, V]``: ``per_op(r, ops)`` of every resolution's variant ops."""
    return np.stack([per_op(r, genome.variant_ops(r)) for r in genome.resolutions])


def _table_values(
    device: str, table: LatencyTable, genome: Genome, value: Callable[[Entry], float | None]
) -> np.ndarray:
    """``value(entry)`` of the table's entry of every variant op."""

    def per_op(r: int, ops: list[Op]) -> np.ndarray:
        section = table.entries.get(r, {})
        values = []
        for op in ops:
            entry = section.get(op.key)
            if entry is None:
                raise LutError(
                    f"the latency table of {device} has no entry for {op.key} (needed at r={r})",
                    hint=f"resolutions in the table: {table.resolutions}; "
                    "rebuild it with `ofa-edge lut build`",
                )
            values.append(value(entry))
        return np.asarray(values, dtype=np.float64)

    return _variant_values(genome, per_op)


def latency_cost(device: str, table: LatencyTable, genome: Genome) -> CostModel:
    """The predicted latency (ms) on ``device`` from its table, calibration included, for the
    genome's resolutions."""
    values = _table_values(device, table, genome, lambda entry: entry.median_ms)
    return CostModel(CostKey("latency", device), "ms", genome, values, calibration=table.calibration)


def energy_cost(device: str, table: LatencyTable, genome: Genome) -> CostModel:
    """The predicted energy per inference (mJ) on ``device``: the sum of its ops' measured
    energies (a table built where the device has power rails; see ``LatencyTable.has_energy``)."""
    if not table.has_energy:
        raise LutError(
            f"the latency table of {device} carries no energy per op",
            hint="build it with `ofa-edge lut build` on a device with power rails (a Jetson's INA3221)",
        )
    values = _table_values(device, table, genome, lambda e: e.energy_mj)
    return CostModel(CostKey("energy", device), "mJ", genome, values)


def count_costs(spec: FamilySpec, genome: Genome) -> tuple[CostModel, CostModel]:
    """MACs and params, equal to :func:`ofa_edge.supernet.counting.count` (both sum the family's
    per-op counts)."""

    def per_op(ops: list[Op], field_: str) -> np.ndarray:
        return np.asarray([getattr(spec.op_counts(op), field_) for op in ops], dtype=np.int64)

    macs = _variant_values(genome, lambda _, ops: per_op(ops, "macs"))
    params = _variant_values(genome, lambda _, ops: per_op(ops, "params"))
    return CostModel(CostKey("macs"), "MACs", genome, macs), CostModel(
        CostKey("params"), "params", genome, params
    )


def file_size_cost(params: CostModel) -> CostModel:
    """fp32 model file size in bytes: 4 bytes per parameter (see the module docstring)."""
    return CostModel(
        CostKey("file_size"),
        "bytes",
        params.genome,
        params.values,
        calibration=Calibration(a=float(FP32_BYTES), b=0.0),
    )


def peak_activation_bytes(spec: FamilySpec, arch: Any) -> int:
    """fp32 peak activation memory of one subnet at batch 1 (the scalar reference)."""
    return FP32_BYTES * spec.peak_activation(arch)


def peak_memory_cost(spec: FamilySpec, genome: Genome) -> CostModel:
    """Peak activation bytes for whole populations (a masked max over the ops)."""

    def per_op(_: int, ops: list[Op]) -> np.ndarray:
        return FP32_BYTES * np.asarray([spec.op_peak(op) for op in ops], dtype=np.int64)

    return CostModel(CostKey("peak_memory"), "bytes", genome, _variant_values(genome, per_op), reduce="max")
