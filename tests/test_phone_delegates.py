"""Phones without Python on their GPU or NNAPI delegate: benchmark_model's flags, its delegate
lines read for coverage, and a partially delegated model refused unless allowed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ofa_edge.devices.android import BenchmarkModelSession
from ofa_edge.devices.backend import Placement, parse_backend
from ofa_edge.devices.benchmark_model import parse_placement
from ofa_edge.devices.inventory import ADB_WORKDIR
from ofa_edge.devices.spec import DeviceSpec
from ofa_edge.errors import PlacementError
from ofa_edge.testing import fake_benchmark_model
from ofa_edge.testing.fake_adbd import FakeAdbd

TFLITE = Path(__file__).parent / "data" / "conv8.tflite"


@pytest.mark.parametrize(
    ("text", "delegate", "expected"),
    [
        (  # LiteRT on a Chromebook GPU (tast's recorded output)
            "INFO: Created TensorFlow Lite delegate for GPU.\n"
            "VERBOSE: Replacing 58 out of 58 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 "
            "partitions for the whole graph.\nINFO: Created 1 GPU delegate kernels.\n"
            "INFO: Explicitly applied GPU delegate, and the model graph will be completely executed by the "
            "delegate.\n",
            "gpu",
            Placement("gpu", True, 58, 58, 1),
        ),
        (  # a release that prints only the verdict
            "INFO: Explicitly applied GPU delegate, and the model graph will be completely executed by the "
            "delegate.\n",
            "gpu",
            Placement("gpu", True, None, None, 1),
        ),
        (  # NNAPI and XNNPACK in one run (a MediaTek field log): NNAPI's line counts, not XNNPACK's
            "VERBOSE: Replacing 5 out of 64 node(s) with delegate (TfLiteNnapiDelegate) node, yielding 5 "
            "partitions for the whole graph.\n"
            "VERBOSE: Replacing 59 out of 62 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 5 "
            "partitions for the whole graph.\n",
            "nnapi",
            Placement("nnapi", False, 64, 5, None),
        ),
        (  # older Android builds: no "out of M"; one partition is the whole graph
            "INFO: Replacing 31 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1 partitions.\n",
            "gpu",
            Placement("gpu", True, None, 31, 1),
        ),
        (
            "INFO: Replacing 20 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 3 partitions.\n",
            "gpu",
            Placement("gpu", False, None, 20, None),
        ),
        (
            "INFO: Explicitly applied NNAPI delegate, and the model graph will be partially executed by the "
            "delegate w/ 2 delegate kernels.\n",
            "nnapi",
            Placement("nnapi", False, None, None, 2),
        ),
        (
            "INFO: Though GPU delegate is explicitly applied, the model graph will not be executed by the "
            "delegate.\n",
            "gpu",
            Placement("gpu", False, None, 0, 0),
        ),
        (
            "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
            "gpu",
            Placement("gpu", False, None, 0, None),
        ),
    ],
    ids=[
        "gpu-whole",
        "verdict-only",
        "nnapi-partial",
        "old-whole",
        "old-partial",
        "kernels",
        "none",
        "silent",
    ],
)
def test_parse_placement(text: str, delegate: str, expected: Placement) -> None:
    assert parse_placement(text, delegate) == expected


def _phone(adb_spec: DeviceSpec, tool: Path, backend: dict) -> DeviceSpec:
    assert adb_spec.adb is not None
    return dataclasses.replace(
        adb_spec,
        runtime="tflite",
        workdir=ADB_WORKDIR,
        adb=dataclasses.replace(adb_spec.adb, benchmark_model=tool),
        backend=parse_backend(adb_spec.name, backend, "tflite"),
    )


@pytest.mark.parametrize("release", fake_benchmark_model.RELEASES)
def test_whole_gpu_delegation_is_measured_and_recorded(
    release: str, adb_spec: DeviceSpec, phone: FakeAdbd, tmp_path: Path
) -> None:
    tool = fake_benchmark_model.install(tmp_path / "benchmark_model", release)
    with BenchmarkModelSession(_phone(adb_spec, tool, {"delegate": "gpu", "precision": "fp16"})) as session:
        (result,) = session.bench([TFLITE], min_runs=5, min_seconds=0).results
    assert result.error is None and result.runs >= 5
    assert result.placement is not None and result.placement.whole and result.placement.on_target == 8


@pytest.mark.parametrize(
    ("release", "delegate", "coverage"),
    [
        (fake_benchmark_model.LITERT, "gpu", "6 of 8 nodes on gpu (1 partitions)"),
        (fake_benchmark_model.LITERT, "nnapi", "6 of 8 nodes on nnapi (1 partitions)"),
        (fake_benchmark_model.TF_2_0, "gpu", "6 nodes on gpu"),
    ],
)
def test_partial_delegation_is_refused_unless_allowed(
    release: str, delegate: str, coverage: str, adb_spec: DeviceSpec, phone: FakeAdbd, tmp_path: Path
) -> None:
    tool = fake_benchmark_model.install(tmp_path / "benchmark_model", release, unsupported=2)
    session = BenchmarkModelSession(_phone(adb_spec, tool, {"delegate": delegate}))
    with session, pytest.raises(PlacementError) as caught:
        session.bench([TFLITE], min_runs=5, min_seconds=0)
    assert str(caught.value).startswith(f"fakephone: conv8.tflite runs {coverage}, not wholly there (hint: ")
    allowed = _phone(adb_spec, tool, {"delegate": delegate, "allow_partial": True})
    with BenchmarkModelSession(allowed) as session:
        (result,) = session.bench([TFLITE], min_runs=5, min_seconds=0).results
    assert result.error is None and result.placement is not None
    assert not result.placement.whole and result.placement.on_target == 6


def test_a_delegate_that_takes_nothing_is_refused(
    adb_spec: DeviceSpec, phone: FakeAdbd, tmp_path: Path
) -> None:
    tool = fake_benchmark_model.install(tmp_path / "benchmark_model", unsupported=8)
    session = BenchmarkModelSession(_phone(adb_spec, tool, {"delegate": "nnapi"}))
    with session, pytest.raises(PlacementError, match=r"conv8.tflite runs 0 nodes on nnapi \(0 partitions\)"):
        session.bench([TFLITE], min_runs=5, min_seconds=0)
