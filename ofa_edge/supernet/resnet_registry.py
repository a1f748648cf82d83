"""The ``ofa_resnet50`` entry: MIT's OFA-ResNet50 (ImageNet, 1000 classes, r 128-224).

Its weights are on the Hugging Face hub (``han-cai/ofa``, file ``ofa_supernet_resnet50``) and
download through ``huggingface_hub`` (:func:`registry.hub_download`); its accuracy predictor is
MIT's ``ofa_resnet50_acc_predictor.pth`` beside MIT's other files. The entry carries the same
fields as :class:`registry.SupernetInfo`, whose ``spec`` is OFA-MobileNetV3's until the supernet
family interface lands; it then registers there under its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ofa_edge.supernet.ofa_resnet import OFAResNet
from ofa_edge.supernet.preprocessing import IMAGENET, Preprocessing
from ofa_edge.supernet.registry import (
    ByteProgress,
    HubFile,
    hub_download,
    mit_predictor_path,
    read_checkpoint,
)
from ofa_edge.supernet.resnet_spec import ResNetSpec

#: The revision of ``han-cai/ofa`` the weights are read at. A branch name, because the commit
#: could not be looked up where this was written (no network); the sha256 recorded at the first
#: download still refuses a changed file.
HUB_REVISION = "main"


@dataclass(frozen=True)
class ResNetSupernetInfo:
    """A registry entry of the OFA-ResNet family (the fields of :class:`registry.SupernetInfo`)."""

    name: str
    description: str
    spec: ResNetSpec
    preprocessing: Preprocessing
    hub: HubFile
    predictor: str | None = None

    def build(self) -> OFAResNet:
        """The untrained supernet of this entry's spec."""
        return self.spec.build()

    def checkpoint_path(self) -> Path:
        """The weights in huggingface_hub's cache (downloaded and hash-checked as needed)."""
        return hub_download(self.name, self.hub, f"supernet {self.name!r}")

    def predictor_path(self, progress: ByteProgress | None = None) -> Path | None:
        """MIT's accuracy predictor of this supernet on this machine, or None if there is none."""
        return None if self.predictor is None else mit_predictor_path(self.name, self.predictor, progress)

    def load(self, checkpoint: str | Path | None = None, pretrained: bool = True) -> OFAResNet:
        """The supernet with its weights (from ``checkpoint`` if given), in eval mode."""
        net = self.build()
        if checkpoint is not None:
            net.load_state_dict(read_checkpoint(checkpoint))
        elif pretrained:
            net.load_state_dict(read_checkpoint(self.checkpoint_path(), trusted=True))
        return net.eval()


OFA_RESNET50 = ResNetSupernetInfo(
    name="ofa_resnet50",
    description="MIT's OFA-ResNet50 (ResNet50-D space), ImageNet (1000 classes), r 128-224",
    spec=ResNetSpec(1000),
    preprocessing=IMAGENET,
    hub=HubFile("han-cai/ofa", "ofa_supernet_resnet50", HUB_REVISION),
    predictor="ofa_resnet50_acc_predictor.pth",
)
