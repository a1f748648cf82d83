"""lut adapt: a table for a new device from another device's table and a few whole subnets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.spec import local_device
from ofa_edge.errors import LutError
from ofa_edge.lut.adapt import adapt, architecture_note, fit_adaptation, op_type
from ofa_edge.lut.table import Calibration, LatencyTable, apply_calibration

SHIPPED = Path(__file__).parent.parent / "latency_tables" / "testbed-sshd_ofa-mbv3-cifar10_fp32_t1.json"
TYPES = ["fixed", "k3", "k5", "k7"]


def test_op_types_are_kernel_and_se_or_fixed() -> None:
    block = "expanded_conv-input:8x8x24-output:8x8x24-expand:72-kernel:5-stride:1-idskip:1-se:{}-hs:0"
    assert op_type(block.format(0)) == "k5" and op_type(block.format(1)) == "k5-se"
    assert op_type("Conv-input:32x32x3-output:32x32x8") == "fixed"
    assert op_type("Logits-input:1x1x640-output:10") == "fixed"


SOURCE_CAL = Calibration(a=0.8, b=0.1, c=0.002, q=0.05)


def _subnets(n: int, seed: int) -> np.ndarray:
    """Per-type op sums (ms) of ``n`` made-up subnets: a fixed part and kernels in any mix."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0.2, 0.4, n), *(rng.uniform(0.0, 1.0, (3, n)))])


def _latency(sums: np.ndarray, factors: list[float], common: float, noise: float, seed: int) -> np.ndarray:
    """Whole-subnet latencies on a device whose ops of each type cost ``factors`` times the
    source's, and whose calibration is the source's for a device ``common`` times slower."""
    n_ops = np.full(len(sums), 20.0)
    truth = apply_calibration(SOURCE_CAL.scaled(common), sums @ np.array(factors), n_ops)
    return truth * (1 + np.random.default_rng(seed).normal(0, noise, len(sums)))


def test_fit_recovers_each_types_factor() -> None:
    """A device where k7 blocks cost 3x and the rest 1.5x the source's: 20 samples (1 % noise)
    find both and predict 30 other subnets within 3 % on average (7 % at worst: the common
    factor the fit rescales the calibration by is a median, not the device's 1.5); the common
    factor alone misses by over 3 times as much."""
    factors = [1.5, 1.5, 1.5, 3.0]
    sums = _subnets(50, seed=0)
    measured = _latency(sums, factors, 1.5, 0.01, seed=1)
    fit = fit_adaptation(sums[:20], np.full(20, 20.0), measured[:20], TYPES, SOURCE_CAL)
    assert fit.ridge is not None and fit.loo_mape_pct < 3
    assert fit.type_scales["k7"] / fit.type_scales["k3"] == pytest.approx(2.0, rel=0.15)
    predicted = apply_calibration(fit.calibration, sums[20:] @ [fit.type_scales[t] for t in TYPES], 20.0)
    error = np.abs(predicted / measured[20:] - 1)
    assert error.mean() < 0.03 and error.max() < 0.07
    uniform = apply_calibration(fit.calibration, fit.scale * sums[20:].sum(1), 20.0)
    assert np.abs(uniform / measured[20:] - 1).max() > 3 * error.max()


def test_a_uniform_speed_change_or_few_samples_keep_the_common_factor() -> None:
    sums = _subnets(20, seed=2)
    measured = _latency(sums, [2.5] * 4, 2.5, 0.0, seed=3)
    fit = fit_adaptation(sums, np.full(20, 20.0), measured, TYPES, SOURCE_CAL)
    assert fit.scale == pytest.approx(2.5) and fit.loo_mape_pct < 1e-6
    assert all(v == pytest.approx(2.5, rel=1e-3) for v in fit.type_scales.values())
    few = fit_adaptation(sums[:4], np.full(4, 20.0), measured[:4] * [1.0, 1.2, 0.9, 1.1], TYPES, SOURCE_CAL)
    assert few.ridge is None and set(few.type_scales.values()) == {few.scale}, "4 samples: no per-type fit"


def test_a_table_of_another_model_format_is_refused(tmp_path: Path) -> None:
    device = dataclasses.replace(local_device(), runtime="tflite")
    with AgentSession(device) as session, pytest.raises(LutError, match="measured with onnxruntime"):
        adapt(session, SHIPPED, tmp_path / "x.json", samples=8)
    assert not (tmp_path / "x.json").exists()


def test_a_device_whose_overheads_do_not_scale_gets_its_calibration_refitted() -> None:
    """Ops 2x the source's but a fixed 3 ms more per network (a slower framework around the
    same kernels; 0.3 % noise): the rescaled source calibration cannot express that, a refitted
    one can, and it predicts 30 other subnets within 1.5 %; without the bounds to refit, the fit
    misses by over 5 %."""
    sums = _subnets(50, seed=4)
    n_ops = np.full(50, 20.0)
    truth = apply_calibration(SOURCE_CAL.scaled(2.0), 2.0 * sums.sum(1), n_ops) + 3.0
    measured = truth * (1 + np.random.default_rng(5).normal(0, 0.003, 50))
    bounds = np.array([[0.2, 20.0], [3.5, 20.0]])
    fit = fit_adaptation(sums[:20], n_ops[:20], measured[:20], TYPES, SOURCE_CAL, refit_bounds=bounds)
    assert fit.recalibrated and fit.ridge is None
    predicted = apply_calibration(fit.calibration, fit.scale * sums[20:].sum(1), n_ops[20:])
    assert np.abs(predicted / measured[20:] - 1).max() < 0.015
    kept = fit_adaptation(sums[:20], n_ops[:20], measured[:20], TYPES, SOURCE_CAL, per_type=False)
    uniform = apply_calibration(kept.calibration, kept.scale * sums[20:].sum(1), n_ops[20:])
    assert not kept.recalibrated and np.abs(uniform / measured[20:] - 1).max() > 0.05


def test_a_source_of_another_cpu_architecture_is_flagged() -> None:
    source = LatencyTable.load(SHIPPED)
    arch = source.device.fingerprint["arch"]
    assert architecture_note(source, {"arch": arch}) is None
    note = architecture_note(source, {"arch": "aarch64"})
    assert note is not None and arch in note and "aarch64" in note and "lut build" in note
    assert architecture_note(source, {}) is None, "an unknown architecture is not a claim"
