"""OFA-ResNet50 subnets and latency-table ops export to ONNX and run in onnxruntime as in torch.

The supernet has fully randomized weights (BN statistics included); a subnet is extracted, its BN
recalibrated on a few images, exported through ``export_model`` (the export pipeline's own check)
and run again on a fresh input. Each distinct op kind's micro-model is written as the latency
table builder writes them (``export_for_timing``) and must compute what its module computes.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_edge.convert.onnx import run_onnx
from ofa_edge.devices.agent import AgentSession
from ofa_edge.devices.spec import local_device
from ofa_edge.export.check import export_model
from ofa_edge.lut.build import build_table
from ofa_edge.lut.table import LatencyTable, SupernetRef
from ofa_edge.measure.models import export_for_timing
from ofa_edge.supernet.bn import recalibrate_bn
from ofa_edge.supernet.registry import get_supernet_info
from ofa_edge.supernet.resnet_spec import ResNetArch, ResNetSpace, ResNetSpec
from tests.test_mit_equivalence import _randomize

OFA_RESNET50 = get_supernet_info("ofa_resnet50")
SPEC = OFA_RESNET50.spec
R = 128


def test_a_subnet_exports_to_onnx_and_runs_as_in_torch(tmp_path: Path) -> None:
    supernet = OFA_RESNET50.build()
    _randomize(supernet, seed=6)
    a = SPEC.space.sample(random.Random(2))
    arch = ResNetArch(a.d, a.e, a.w, R)
    supernet.set_arch(arch)
    subnet = supernet.get_active_subnet()
    images = np.random.default_rng(0).integers(0, 256, (4, R, R, 3), dtype=np.uint8)
    recalibrate_bn(subnet, [torch.randn(4, 3, R, R, generator=torch.Generator().manual_seed(1))])
    report = export_model(
        subnet.eval(),
        R,
        "onnx",
        "fp32",
        images,
        tmp_path / "subnet.onnx",
        preprocessing=OFA_RESNET50.preprocessing,
        supernet=OFA_RESNET50.name,
        arch=arch.to_dict(),
    )
    assert report.fp32_max_abs_diff <= report.fp32_tolerance and report.arch == arch.to_dict()
    x = torch.randn(2, 3, R, R, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = subnet(x).numpy()
    assert np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(run_onnx(tmp_path / "subnet.onnx", x.numpy()), expected, rtol=0, atol=1e-4)


def test_op_micro_models_export_and_compute_their_modules(tmp_path: Path) -> None:
    ops = SPEC.distinct_ops(R)
    one_of_each = {op.kind: op for op in ops}  # the last of each kind (a downsampling bottleneck)
    for kind, op in one_of_each.items():
        torch.manual_seed(0)
        module = SPEC.op_module(op).eval()
        h, w, c = op.input
        shape = (1, c, h, w)
        path = export_for_timing(module, shape, "onnx", "fp32", tmp_path / f"{kind}.onnx")
        x = torch.randn(shape, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            expected = module(x).numpy()
        np.testing.assert_allclose(run_onnx(path, x.numpy()), expected, rtol=0, atol=1e-4, err_msg=op.key)


def test_lut_build_measures_every_op_through_the_generic_path(tmp_path: Path) -> None:
    """``lut build`` on the local device knows nothing of ResNets: the family lists its ops, builds
    their micro-models, and the table then predicts a ResNet arch as the sum of its ops."""
    space = ResNetSpace(
        depth_list=(0, 1), expand_ratio_list=(0.25,), width_mult_list=(0.65,), resolutions=(32,)
    )
    spec = ResNetSpec(10, space)
    device = dataclasses.replace(local_device(), workdir=str(tmp_path / "agent"))
    fast = {"min_runs": 3, "min_seconds": 0.0, "batch_size": 16, "passes": 1}
    with AgentSession(device) as session:
        table = build_table(session, SupernetRef("tiny-resnet", spec), [32], tmp_path / "lut.json", **fast)
    assert set(table.entries[32]) == {op.key for op in spec.distinct_ops(32)}
    assert all(e.median_ms > 0 for e in table.entries[32].values())
    table = LatencyTable.load(tmp_path / "lut.json")  # read back: the spec comes from the file
    assert table.spec == spec
    small, large = space.min_arch(32), space.max_arch(32)
    expected = sum(table.entries[32][op.key].median_ms for op in spec.ops(large))
    assert table.predict(large, calibrated=False) == pytest.approx(expected)
    assert table.predict(small, calibrated=False) < table.predict(large, calibrated=False)
