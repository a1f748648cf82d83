"""MIT's OFA-ResNet50 accuracy predictor (``ofa_resnet50_acc_predictor.pth``) through ofa-edge.

MIT's ``ResNetArchEncoder`` features, in its order: a one-hot resolution over the predictor's
resolution list, a 2-way one-hot of whether ``d[0] > 0`` (the stem's residual block), per width
slot a one-hot width index, and per bottleneck slot a one-hot expand ratio (all zeros for the
slots the stage depth skips). The MLP and ``base_acc`` are :class:`AccuracyPredictor`'s, whose
state-dict keys MIT's file has (``base_acc``, ``layers.{0,1,2}.0.*``, ``layers.3.weight``).
Predictions are top-1 as a 0-1 fraction, MIT's units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ofa_edge.accuracy.predictor import (
    AccuracyPredictor,
    fill_predictor,
    read_predictor_file,
    register_predictor_loader,
)
from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.supernet.resnet_spec import BASE_DEPTHS, ResNetArch, ResNetSpace, ResNetSpec

#: The resolutions MIT's ResNet50 predictor encodes (its tutorial's ``image_size_list``).
MIT_RESNET_RESOLUTIONS = (128, 144, 160, 176, 192, 224, 240, 256)


@dataclass(frozen=True)
class ResNetArchEncoder:
    """MIT's ``ResNetArchEncoder`` feature layout over a space and a resolution list."""

    space: ResNetSpace
    resolutions: tuple[int, ...] = MIT_RESNET_RESOLUTIONS

    @property
    def n_widths(self) -> int:
        return len(BASE_DEPTHS) + 2

    @property
    def n_dim(self) -> int:
        s = self.space
        return (
            len(self.resolutions)
            + 2
            + self.n_widths * len(s.width_mult_list)
            + s.n_blocks * len(s.expand_ratio_list)
        )

    def encode(self, archs: Sequence[ResNetArch]) -> np.ndarray:
        """float32 [len(archs), n_dim] features (MIT's ``arch2feature`` for each arch)."""
        s = self.space
        archs = [a.validate(s) for a in archs]
        outside = [a.r for a in archs if a.r not in self.resolutions]
        if outside:
            raise ConfigError(
                f"arch outside the predictor's space: r={outside[0]}",
                hint=f"MIT's ResNet50 predictor knows the resolutions {list(self.resolutions)}",
            )
        return self.encode_indices(
            np.array([a.d for a in archs], dtype=np.int64).reshape(len(archs), 1 + s.n_stages),
            np.array([[s.expand_ratio_list.index(v) for v in a.e] for a in archs], dtype=np.int64),
            np.array([a.w for a in archs], dtype=np.int64).reshape(len(archs), self.n_widths),
            np.array([self.resolutions.index(a.r) for a in archs], dtype=np.int64),
        )

    def encode_indices(self, d: np.ndarray, e: np.ndarray, w: np.ndarray, r: np.ndarray) -> np.ndarray:
        """float32 [P, n_dim] features from arrays: depths ``d`` [P, 5] (values), ``e`` [P, n_blocks]
        into ``expand_ratio_list``, width indices ``w`` [P, 6], ``r`` [P] into ``resolutions``
        (the search's populations, encoded without building archs)."""
        s = self.space
        n_r, n_w, n_e = len(self.resolutions), len(s.width_mult_list), len(s.expand_ratio_list)
        w_start, e_start = n_r + 2, n_r + 2 + self.n_widths * n_w
        stage = np.array([st for st, slots in enumerate(s.stage_slots) for _ in slots])
        position = np.array([i for slots in s.stage_slots for i in range(len(slots))])
        active = d[:, 1 + stage] > position - np.asarray(BASE_DEPTHS)[stage]
        rows = np.arange(len(r))[:, None]
        x = np.zeros((len(r), self.n_dim), dtype=np.float32)
        x[rows[:, 0], r] = 1
        x[rows[:, 0], n_r + (d[:, 0] > 0)] = 1
        x[rows, w_start + np.arange(self.n_widths) * n_w + w] = 1
        x[rows, e_start + np.arange(s.n_blocks) * n_e + e] = active
        return x


def load_resnet_predictor(path: str | Path, space: ResNetSpace) -> AccuracyPredictor[ResNetArchEncoder]:
    """MIT's ResNet50 accuracy predictor (a state dict saved by ``ofa.nas.accuracy_predictor``)."""
    path = Path(path)
    state = read_predictor_file(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    first_layer = state.get("layers.0.0.weight") if isinstance(state, dict) else None
    if first_layer is None or "base_acc" not in state:
        raise CheckpointError(
            f"{path} is not MIT's ResNet50 accuracy predictor (no layers.0.0.weight and base_acc)",
            hint="pass MIT's ofa_resnet50_acc_predictor.pth",
        )
    encoder = ResNetArchEncoder(space)
    if first_layer.shape[1] != encoder.n_dim:
        raise CheckpointError(
            f"predictor {path} takes {first_layer.shape[1]} features; MIT's ResNet50 encoding of this "
            f"space has {encoder.n_dim} ({len(MIT_RESNET_RESOLUTIONS)} resolutions)",
            hint="pass the predictor trained for this supernet's space",
        )
    n_layers = sum(1 for k in state if k.startswith("layers.") and k.endswith(".0.weight"))
    return fill_predictor(AccuracyPredictor(encoder, first_layer.shape[0], n_layers), state, path)


register_predictor_loader(ResNetSpec.family, load_resnet_predictor)
