"""Model files written only to be timed on a device: whole subnets, or any module.

Weights are random (latency does not depend on them), int8 files are calibrated on random inputs,
fp16 files are the fp32 ones lowered. Files are written atomically, so writers sharing a cache
never see each other's halves.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from ofa_edge.convert.formats import EXPORT_LOCK, convert, quantize
from ofa_edge.convert.tflite import converter_versions
from ofa_edge.files import atomic_path
from ofa_edge.supernet.family import Arch, FamilySpec

#: Random normal samples that calibrate an int8 model's activation ranges.
CALIB_SAMPLES = 8


def tool_versions(fmt: str, precision: str) -> str:
    """The converter versions a timing model file depends on (beyond torch and the opset): part
    of the cache keys of files written for timing."""
    if fmt == "tflite":
        return "|".join(f"{k}={v}" for k, v in sorted(converter_versions().items()))
    if precision != "fp32":
        import onnxruntime  # only for lowered ONNX keys: its quantizer and fp16 converter

        return f"onnxruntime={onnxruntime.__version__}"
    return ""


def export_for_timing(
    module: torch.nn.Module, shape: tuple[int, ...], fmt: str, precision: str, path: Path
) -> Path:
    """Write ``module`` in the device's format and precision (fp32, fp16, int8), for timing only
    (int8 calibrates on random inputs: latency does not depend on the values); atomically, via
    temp files of this writer's own, so two builds exporting one op into the shared cache never
    mix their files."""
    with atomic_path(path, suffix=path.suffix) as tmp, tempfile.TemporaryDirectory() as scratch:
        fp32 = tmp if precision == "fp32" else Path(scratch) / f"fp32{path.suffix}"
        convert(module, shape, fmt, fp32)
        if precision != "fp32":
            calib = torch.randn((CALIB_SAMPLES, *shape[1:]), generator=torch.Generator().manual_seed(0))
            quantize(fp32, tmp, fmt, precision, calib.numpy())
    return path


def export_subnets(
    spec: FamilySpec, archs: Sequence[Arch], folder: Path, fmt: str = "onnx", precision: str = "fp32"
) -> list[Path]:
    """Whole subnets of ``spec`` as model files ``folder/subnetNNN.FMT`` to time (weights drawn
    with seed 0; the export lock keeps other threads off torch's global RNG meanwhile)."""
    with EXPORT_LOCK:
        torch.manual_seed(0)
        net = spec.build().eval()
    paths = []
    for i, arch in enumerate(archs):
        net.set_arch(arch)
        shape = (1, 3, arch.r, arch.r)
        path = folder / f"subnet{i:03d}.{fmt}"
        paths.append(export_for_timing(net.get_active_subnet(), shape, fmt, precision, path))
    return paths
