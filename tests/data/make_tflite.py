"""Regenerate ``conv8.tflite``, the tiny TFLite model the device tests measure.

Committed as a file so the test suite needs only the LiteRT runtime, not the converter
(litert-torch is a large optional install). Run with the ``[tflite]`` extra installed:
``python tests/data/make_tflite.py``.
"""

from pathlib import Path

import litert_torch
import torch

if __name__ == "__main__":
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU()).eval()
    out = Path(__file__).with_name("conv8.tflite")
    litert_torch.convert(model, (torch.zeros(1, 3, 32, 32),)).export(str(out))
    print(f"wrote {out} ({out.stat().st_size} bytes)")
