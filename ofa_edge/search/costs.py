"""Subnet costs (latency per device, MACs, params, file size, peak activations) for whole populations.

Every cost of a subnet decomposes the same way over the ops its family lists
(:meth:`FamilySpec.ops`): fixed ops (first conv and block, final layers) that depend on the
resolution only, plus one term per block slot the depth runs,
which depends on (resolution, slot, kernel, expand) only (a slot's input size and channels
never depend on the other choices). So each cost is precomputed once as arrays
``head [R, h]``, ``slots [R, n_blocks, n_k, n_e]`` and ``tail [R, t]``, and a population's cost is a
gather plus a masked sum (peak memory: a masked max). Sums run in op order (``np.cumsum``), so
latencies equal :meth:`LatencyTable.predict` bit for bit; counts equal
:func:`ofa_edge.supernet.counting.count`.

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

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ofa_edge.lut.keys import Op, subnet_ops
from ofa_edge.lut.table import Calibration, Entry, LatencyTable, LutError, apply_calibration
from ofa_edge.search.population import Genome, Population
from ofa_edge.supernet.family import FamilySpec
from ofa_edge.supernet.space import ArchConfig

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
    """One metric of a subnet as precomputed arrays (see the module docstring)."""

    key: CostKey
    unit: str
    head: np.ndarray  # [R, h]
    slots: np.ndarray  # [R, n_blocks, n_k, n_e]
    tail: np.ndarray  # [R, t]
    reduce: str = "sum"  # "sum" (in op order) or "max"
    # value = apply_calibration(calibration, reduced, n_ops) (a table's calibration; n_ops: the
    # head and tail ops plus the active slots); None: the reduced value itself.
    calibration: Calibration | None = None
    _min: tuple[float, Population] | None = field(default=None, repr=False)

    def evaluate(self, pop: Population, active: np.ndarray) -> np.ndarray:
        """The cost of every member; ``active`` [P, n_blocks] says which slots each runs."""
        slot_ids = np.arange(self.slots.shape[1])[None, :]
        per_slot = np.where(active, self.slots[pop.r[:, None], slot_ids, pop.k, pop.e], 0)
        cols = np.concatenate([self.head[pop.r], per_slot, self.tail[pop.r]], axis=1)
        total = np.cumsum(cols, axis=1)[:, -1] if self.reduce == "sum" else cols.max(axis=1)
        if self.calibration is None:
            return total
        n_ops = cols.shape[1] - self.slots.shape[1] + active.sum(axis=1)
        return apply_calibration(self.calibration, total, n_ops)

    def minimum(self, genome: Genome) -> tuple[float, Population]:
        """The exact smallest value any subnet reaches, and one subnet reaching it.

        For a given depth in every stage (so a given op count) the value grows with the slots'
        sum (or max), so each slot takes its cheapest (kernel, expand) and every combination of
        depths is evaluated, at every resolution. (Calibrations are fitted increasing in the op
        sum, see :func:`ofa_edge.lut.validate.fit_calibration`.)
        """
        if self._min is None:
            n_r, n_b, n_k, n_e = self.slots.shape
            best = self.slots.reshape(n_r, n_b, n_k * n_e).argmin(axis=2)  # [R, n_blocks]
            depths = np.array(list(itertools.product(*genome.space.depth_lists)))
            r = np.repeat(np.arange(n_r), len(depths))
            d = np.tile(depths, (n_r, 1))
            cands = Population(best[r] // n_e, best[r] % n_e, d, r)
            values = self.evaluate(cands, genome.active(d))
            i = int(values.argmin())
            self._min = (float(values[i]), cands.take(np.array([i])))
        return self._min


def _slot_grid(
    spec: FamilySpec, genome: Genome, per_op: Callable[[ArchConfig, list[Op]], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(head, slots, tail) arrays from ``per_op(arch, ops)`` over every (resolution, kernel, expand).

    ``per_op`` gets the subnet running every slot with uniform (k, e) at one resolution and its
    ops, and returns one value per op; the ops filling block slots are the slots' values, those
    before them the head's and those after them the tail's.
    """
    space = spec.space
    n_k, n_e = len(space.ks_list), len(space.expand_ratio_list)
    heads, slots, tails = [], [], []
    for r in genome.resolutions:
        grid = None
        for ki, k in enumerate(space.ks_list):
            for ei, e in enumerate(space.expand_ratio_list):
                arch = space.uniform_arch(k, e, r)
                ops = spec.ops(arch)
                at = [i for i, op in enumerate(ops) if op.slot is not None]
                # The slots' ops are contiguous and in slot order (every family lists them so).
                assert at == list(range(at[0], at[0] + genome.n_blocks))
                assert [ops[i].slot for i in at] == list(range(genome.n_blocks))
                values = per_op(arch, ops)
                if grid is None:
                    grid = np.zeros((genome.n_blocks, n_k, n_e), dtype=values.dtype)
                    heads.append(values[: at[0]])
                    tails.append(values[at[-1] + 1 :])
                grid[:, ki, ei] = values[at[0] : at[-1] + 1]
        assert grid is not None  # the space has at least one kernel and expand ratio
        slots.append(grid)
    return np.stack(heads), np.stack(slots), np.stack(tails)


def _table_grid(
    device: str, table: LatencyTable, genome: Genome, value: Callable[[Entry], float | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(head, slots, tail) arrays of ``value(entry)`` of the table's ops."""
    spec = table.spec

    def per_op(arch: ArchConfig, ops: list[Op]) -> np.ndarray:
        section = table.entries.get(arch.r, {})
        values = []
        for op in ops:
            entry = section.get(op.key)
            if entry is None:
                raise LutError(
                    f"the latency table of {device} has no entry for {op.key} (needed at r={arch.r})",
                    hint=f"resolutions in the table: {table.resolutions}; "
                    "rebuild it with `ofa-edge lut build`",
                )
            values.append(value(entry))
        return np.asarray(values, dtype=np.float64)

    return _slot_grid(spec, genome, per_op)


def latency_cost(device: str, table: LatencyTable, genome: Genome) -> CostModel:
    """The predicted latency (ms) on ``device`` from its table, calibration included, for the
    genome's resolutions."""
    grid = _table_grid(device, table, genome, lambda entry: entry.median_ms)
    return CostModel(CostKey("latency", device), "ms", *grid, calibration=table.calibration)


def energy_cost(device: str, table: LatencyTable, genome: Genome) -> CostModel:
    """The predicted energy per inference (mJ) on ``device``: the sum of its ops' measured
    energies (a table built where the device has power rails; see ``LatencyTable.has_energy``)."""
    if not table.has_energy:
        raise LutError(
            f"the latency table of {device} carries no energy per op",
            hint="build it with `ofa-edge lut build` on a device with power rails (a Jetson's INA3221)",
        )
    return CostModel(
        CostKey("energy", device), "mJ", *_table_grid(device, table, genome, lambda e: e.energy_mj)
    )


def count_costs(spec: FamilySpec, genome: Genome) -> tuple[CostModel, CostModel]:
    """MACs and params, equal to :func:`ofa_edge.supernet.counting.count` (both sum the family's
    per-op counts)."""

    def per_op(ops: list[Op], field_: str) -> np.ndarray:
        return np.asarray([getattr(spec.op_counts(op), field_) for op in ops], dtype=np.int64)

    macs = _slot_grid(spec, genome, lambda _, ops: per_op(ops, "macs"))
    params = _slot_grid(spec, genome, lambda _, ops: per_op(ops, "params"))
    return CostModel(CostKey("macs"), "MACs", *macs), CostModel(CostKey("params"), "params", *params)


def file_size_cost(params: CostModel) -> CostModel:
    """fp32 model file size in bytes: 4 bytes per parameter (see the module docstring)."""
    return CostModel(
        CostKey("file_size"),
        "bytes",
        params.head,
        params.slots,
        params.tail,
        calibration=Calibration(a=float(FP32_BYTES), b=0.0),
    )


def peak_activation_bytes(spec: FamilySpec, arch: ArchConfig) -> int:
    """fp32 peak activation memory of one subnet at batch 1 (the scalar reference)."""
    return FP32_BYTES * max(spec.op_peak(op) for op in subnet_ops(spec, arch.validate(spec.space)))


def peak_memory_cost(spec: FamilySpec, genome: Genome) -> CostModel:
    """Peak activation bytes for whole populations (a masked max over the ops)."""

    def per_op(_: ArchConfig, ops: list[Op]) -> np.ndarray:
        return FP32_BYTES * np.asarray([spec.op_peak(op) for op in ops], dtype=np.int64)

    return CostModel(CostKey("peak_memory"), "bytes", *_slot_grid(spec, genome, per_op), reduce="max")
