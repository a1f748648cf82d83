"""Starting a training run from another supernet's weights (``--init``): its backbone, every
weight but the final classifier, which the new run builds for its own classes.

A source is a registry name (MIT's supernets download on first use), a supernet entry file
(``.toml``), a released weights file, a training run (folder or ``checkpoint.pt``) or a
checkpoint in MIT's format (``{"state_dict": ...}``). Every other tensor must fit the new
supernet exactly: a backbone loaded into another layout would train from nonsense.
"""

from __future__ import annotations

from pathlib import Path

from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.supernet.ofa_mbv3 import OFAMobileNetV3
from ofa_edge.supernet.registry import SupernetInfo, get_supernet_info, supernet_weights
from ofa_edge.supernet.spec import MBv3Spec
from ofa_edge.training.release import load_weights

#: State-dict keys of the final classifier (``classifier.linear.weight`` and ``.bias``).
CLASSIFIER_PREFIX = "classifier."


def _supernet_of(source: str) -> SupernetInfo | None:
    """The supernet ``source`` names (registry name or entry file); None for a weights file or run
    (a path that exists, or one with a folder part: registry names have none)."""
    path = Path(source)
    if source.endswith(".toml") or not (path.exists() or path.name != source):
        return get_supernet_info(source)
    return None


def init_spec(source: str) -> MBv3Spec | None:
    """The layout of ``source`` when it names a supernet (registry name or entry file), to build
    the new run's supernet with; None for weights files and runs (the recipe's layout is used)."""
    info = _supernet_of(source)
    if info is None:
        return None
    if not isinstance(info.spec, MBv3Spec):
        raise ConfigError(
            f"{info.name} is a {info.spec.family} supernet; training starts from OFA-MobileNetV3 ones",
            hint="pass --init an OFA-MobileNetV3 supernet, weights file or run",
        )
    return info.spec


def init_backbone(net: OFAMobileNetV3, source: str) -> str:
    """Load every weight of ``source`` but its classifier into ``net`` (strictly: same keys and
    shapes, the classifier aside); a one-line description of what was loaded."""
    info = _supernet_of(source)
    weights = load_weights(source) if info is None else supernet_weights(info)
    what = source if info is None else info.name
    backbone = {k: v for k, v in weights.items() if not k.startswith(CLASSIFIER_PREFIX)}
    own_classifier = {k: v for k, v in net.state_dict().items() if k.startswith(CLASSIFIER_PREFIX)}
    try:
        net.load_state_dict({**backbone, **own_classifier})
    except CheckpointError as err:
        raise CheckpointError(
            f"cannot start from the backbone of {what}: {err.message}",
            hint="start from a supernet of the new one's width, search space and strides (only the "
            "classifier may differ), or build the new one with init_spec(source)",
        ) from None
    return f"backbone of {what} ({len(backbone)} tensors); new {net.spec.n_classes}-class classifier"
