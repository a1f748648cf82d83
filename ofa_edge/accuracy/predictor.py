"""Accuracy predictor: OFA's arch encoding and MLP, trained on measured subnets, run batched.

The encoding and the network are MIT's (``ofa.nas.accuracy_predictor``), so their published
predictor weights load with ``load_state_dict``: per block slot a one-hot kernel size and a
one-hot expand ratio (all zeros for slots the depth skips), plus a one-hot resolution, laid out
as ``[resolution | kernel per slot | expand per slot]``; an MLP of ``n_layers`` Linear+ReLU
layers (400 wide) and a final Linear without bias, plus ``base_acc`` (the mean training target).
Predictions are in the units of the training targets (ofa-edge's tables: top-1 %; MIT's
predictors: a 0-1 fraction).

MIT's tutorial predictor (``ofa/tutorial/accuracy_predictor.py``, the ``acc_predictor.pth`` of
``ofa_mbv3_d234_e346_k357_w1.2``) is a bare ``nn.Sequential`` over 128 features laid out as
``[kernel per slot | expand per slot | resolution at (r-112)//16 of 112..224]``, its last Linear
with a bias. It is the same function in this layout: :func:`load_predictor` reorders its first
layer's columns, keeps those of the resolutions it was trained on (160-224) and takes the output
bias as ``base_acc``.

Saved files (``torch.save`` of a dict, read with ``weights_only=True``)::

    {"kind": "ofa-edge/accuracy-predictor", "schema_version": 1, "supernet": ID,
     "encoder": {"ks_list", "expand_list", "max_depth", "n_stages", "resolutions"
                 [, "stage_depths": [...]]},   # each stage's slots, when stages differ
     "hidden_size": 400, "n_layers": 3, "metrics": {...}, "state_dict": {...}}
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.files import atomic_path, save_figure
from ofa_edge.stats import spearman
from ofa_edge.supernet.space import ArchConfig, SearchSpace

KIND = "ofa-edge/accuracy-predictor"
SCHEMA_VERSION = 1
#: The resolutions MIT's tutorial predictor was trained on (its ``ArchManager``'s), and the
#: resolution its one-hot starts at, one slot per 16 px.
TUTORIAL_RESOLUTIONS = (160, 176, 192, 208, 224)
TUTORIAL_FIRST_R = 112
TUTORIAL_FEATURES = 128
_TUTORIAL_KEY = re.compile(r"\d+\.(weight|bias)")


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: for these small matmuls extra threads only add synchronization,
    and on a busy 2-core machine they made each call 20-40x slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class ArchEncoder:
    """MIT's MobileNetArchEncoder layout, vectorized: choice indices in, one-hot rows out.

    ``stage_depths`` gives each stage's block slots when the stages differ (ProxylessNAS: the
    last stage has one); empty, every stage has ``max_depth``.
    """

    ks_list: tuple[int, ...]
    expand_list: tuple[float, ...]
    max_depth: int
    n_stages: int
    resolutions: tuple[int, ...]
    stage_depths: tuple[int, ...] = ()

    @classmethod
    def for_space(cls, space: SearchSpace, resolutions: Sequence[int] | None = None) -> ArchEncoder:
        """The encoder of a search space (optionally over a subset of its resolutions)."""
        return cls(
            tuple(space.ks_list),
            tuple(space.expand_ratio_list),
            space.max_depth,
            space.n_stages,
            tuple(sorted(resolutions if resolutions is not None else space.resolutions)),
            space.stage_max_depths if space.stage_depths else (),
        )

    @property
    def stage_max_depths(self) -> tuple[int, ...]:
        return self.stage_depths or (self.max_depth,) * self.n_stages

    @property
    def n_blocks(self) -> int:
        return sum(self.stage_max_depths)

    @property
    def n_dim(self) -> int:
        return len(self.resolutions) + self.n_blocks * (len(self.ks_list) + len(self.expand_list))

    def encode_indices(self, k: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray) -> np.ndarray:
        """float32 [P, n_dim] features from index arrays: k, e [P, n_blocks] into ks_list /
        expand_list, d [P, n_stages] depths (values), r [P] into ``resolutions``."""
        n_r, n_k, n_b = len(self.resolutions), len(self.ks_list), self.n_blocks
        rows = np.arange(len(r))[:, None]
        positions = np.array([i for n in self.stage_max_depths for i in range(n)])
        stages = np.array([s for s, n in enumerate(self.stage_max_depths) for _ in range(n)])
        active = positions[None, :] < d[:, stages]
        slots = np.arange(n_b)[None, :]
        x = np.zeros((len(r), self.n_dim), dtype=np.float32)
        x[rows[:, 0], r] = 1.0
        x[rows, n_r + slots * n_k + k] = active
        x[rows, n_r + n_b * n_k + slots * len(self.expand_list) + e] = active
        return x

    def indices(self, archs: Sequence[ArchConfig]) -> tuple[np.ndarray, ...]:
        """(k, e, d, r) index arrays of ``archs``; a value outside the encoder's lists is an error."""
        try:
            k = np.array([[self.ks_list.index(v) for v in a.ks] for a in archs], dtype=np.int64)
            e = np.array([[self.expand_list.index(v) for v in a.e] for a in archs], dtype=np.int64)
            r = np.array([self.resolutions.index(a.r) for a in archs], dtype=np.int64)
        except ValueError as err:
            raise ConfigError(
                f"arch outside the predictor's space: {err}",
                hint=f"kernels {list(self.ks_list)}, expands {list(self.expand_list)}, "
                f"resolutions {list(self.resolutions)}",
            ) from None
        d = np.array([list(a.d) for a in archs], dtype=np.int64).reshape(len(archs), self.n_stages)
        return k.reshape(len(archs), self.n_blocks), e.reshape(len(archs), self.n_blocks), d, r

    def encode(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """float32 [len(archs), n_dim] features (MIT's ``arch2feature`` for each arch)."""
        return self.encode_indices(*self.indices(archs))


class FeatureEncoder(Protocol):
    """What a predictor needs of its arch encoder (each supernet family has its own encoding)."""

    @property
    def n_dim(self) -> int: ...

    def encode(self, archs: Sequence[Any]) -> np.ndarray: ...


EncoderT = TypeVar("EncoderT", bound=FeatureEncoder)


class AccuracyPredictor(nn.Module, Generic[EncoderT]):
    """MIT's accuracy-predictor MLP over an encoder's features (same state-dict keys); the
    encoder is :class:`ArchEncoder` for OFA-MobileNetV3."""

    def __init__(self, encoder: EncoderT, hidden_size: int = 400, n_layers: int = 3) -> None:
        super().__init__()
        self.encoder = encoder
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Linear(encoder.n_dim if i == 0 else hidden_size, hidden_size), nn.ReLU(inplace=True)
            )
            for i in range(n_layers)
        ]
        layers.append(nn.Linear(hidden_size, 1, bias=False))
        self.layers = nn.Sequential(*layers)
        self.base_acc: torch.Tensor
        self.register_buffer("base_acc", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1) + self.base_acc

    def frozen(self) -> CompiledPredictor:
        """A frozen copy for batched inference: the search calls it once per generation."""
        *hidden, head = [m for m in self.layers.modules() if isinstance(m, nn.Linear)]
        mats = []
        for linear in hidden:
            assert linear.bias is not None
            mats.append((linear.weight.detach().T.contiguous(), linear.bias.detach().clone()))
        return CompiledPredictor(mats, head.weight.detach().T.contiguous(), float(self.base_acc.item()))

    def predict(self, archs: Sequence[Any]) -> np.ndarray:
        """Predicted accuracy of each arch (float32 numpy, the training targets' units)."""
        return self.frozen()(self.encoder.encode(archs))


class CompiledPredictor:
    """The predictor's MLP as bare float32 matmuls on one thread: numpy in, numpy out."""

    def __init__(
        self, layers: list[tuple[torch.Tensor, torch.Tensor]], head: torch.Tensor, base_acc: float
    ) -> None:
        self.layers = layers
        self.head = head
        self.base_acc = base_acc

    def __call__(self, features: np.ndarray) -> np.ndarray:
        with one_thread(), torch.inference_mode():
            h = torch.from_numpy(features)
            for w, b in self.layers:
                h = torch.relu_(torch.addmm(b, h, w))
            return (h @ self.head)[:, 0].add_(self.base_acc).numpy()


@dataclass(frozen=True)
class FitResult:
    """A trained predictor and how well it does on the held-out archs."""

    predictor: AccuracyPredictor
    rmse: float
    spearman: float
    n_train: int
    n_val: int
    held_out: tuple[np.ndarray, np.ndarray]  # (predicted, measured) on the held-out archs

    @property
    def metrics(self) -> dict[str, float]:
        return {"rmse": self.rmse, "spearman": self.spearman, "n_train": self.n_train, "n_val": self.n_val}


#: Adam's L2 penalty in :func:`fit_predictor`. Without it the 400-wide MLP fits a table's label
#: noise exactly (training RMSE 0) and predicts held-out subnets worse: on v2's table (800 fitted,
#: 200 held out) 3e-5 took RMSE from 0.67 to 0.44 points and Spearman from 0.855 to 0.948.
WEIGHT_DECAY = 3e-5


def fit_predictor(
    archs: Sequence[ArchConfig],
    accs: Sequence[float],
    encoder: ArchEncoder,
    *,
    hidden_size: int = 400,
    n_layers: int = 3,
    epochs: int = 200,
    lr: float = 1e-3,
    weight_decay: float = WEIGHT_DECAY,
    batch_size: int = 256,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> FitResult:
    """Train a predictor (Adam with ``weight_decay`` as L2 penalty, MSE, base_acc = mean target)
    on a shuffled split of (arch, acc).

    Returns it with the RMSE and Spearman rank correlation on the held-out ``val_fraction``.
    """
    if len(archs) != len(accs):
        raise ConfigError(f"fit_predictor: {len(archs)} archs but {len(accs)} accuracies")
    n_val = round(len(archs) * val_fraction)
    if len(archs) - n_val < 2 or n_val < 2:
        raise ConfigError(
            f"fit_predictor: {len(archs)} archs are too few to train and hold out {val_fraction:.0%}",
            hint="measure more subnets",
        )
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(encoder.encode(archs))
    y = torch.tensor(np.asarray(accs, dtype=np.float32))
    order = torch.randperm(len(x), generator=gen)
    val, train = order[:n_val], order[n_val:]
    torch.manual_seed(seed)
    model = AccuracyPredictor(encoder, hidden_size, n_layers)
    model.base_acc.fill_(float(y[train].mean()))
    model.train()
    with one_thread():
        _train(model, x, y, train, epochs, batch_size, lr, weight_decay, gen)
    model.eval()
    pred = model.frozen()(x[val].numpy())
    truth = y[val].numpy()
    rmse = float(np.sqrt(np.mean((pred - truth) ** 2)))
    return FitResult(model, rmse, spearman(pred, truth), len(train), n_val, (pred, truth))


def fit_plot(fit: FitResult, title: str, path: Path) -> None:
    """Predicted vs measured top-1 of the held-out subnets, with RMSE and Spearman."""
    from matplotlib.figure import Figure

    pred, truth = fit.held_out
    fig = Figure(figsize=(5.5, 5))  # no pyplot: no global backend or figure registry touched
    ax = fig.add_subplot()
    lo, hi = float(min(pred.min(), truth.min())), float(max(pred.max(), truth.max()))
    pad = 0.03 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=1, label="predicted = measured")
    ax.scatter(truth, pred, s=12, c="tab:blue", label=f"{fit.n_val} held-out subnets")
    ax.set_xlabel("measured top-1")
    ax.set_ylabel("predicted top-1")
    ax.set_title(f"{title}\nRMSE {fit.rmse:.4f}, Spearman {fit.spearman:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)


def _train(
    model: AccuracyPredictor,
    x: torch.Tensor,
    y: torch.Tensor,
    train: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    gen: torch.Generator,
) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        perm = train[torch.randperm(len(train), generator=gen)]
        for start in range(0, len(perm), batch_size):
            idx = perm[start : start + batch_size]
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def save_predictor(
    predictor: AccuracyPredictor, path: str | Path, supernet: str, metrics: dict[str, Any] | None = None
) -> Path:
    """Write ``predictor`` with its encoder, supernet id and metrics (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    enc = asdict(predictor.encoder)
    doc = {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "supernet": supernet,
        "encoder": {k: list(v) if isinstance(v, tuple) else v for k, v in enc.items() if v != ()},
        "hidden_size": predictor.hidden_size,
        "n_layers": predictor.n_layers,
        "metrics": dict(metrics or {}),
        "state_dict": predictor.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(doc, tmp)
    return path


@dataclass(frozen=True)
class LoadedPredictor:
    """A predictor file's contents: the model and what it was trained for."""

    predictor: AccuracyPredictor
    supernet: str | None
    metrics: dict[str, Any]


def load_predictor(path: str | Path, space: SearchSpace | None = None) -> LoadedPredictor:
    """Read a file from :func:`save_predictor`, or a bare MIT state dict given the ``space``.

    A bare state dict's resolutions are inferred: its input width must match ``space``'s
    blocks and resolution count (MIT's predictors are trained on the space's own list).
    """
    path = Path(path)
    doc = read_predictor_file(path)
    if isinstance(doc, dict) and doc.get("kind") == KIND:
        if doc.get("schema_version", 0) > SCHEMA_VERSION:
            raise CheckpointError(
                f"predictor {path} has schema_version {doc['schema_version']}; "
                f"this ofa-edge reads up to {SCHEMA_VERSION}",
                hint="upgrade ofa-edge",
            )
        enc = doc["encoder"]
        encoder = ArchEncoder(
            tuple(enc["ks_list"]),
            tuple(enc["expand_list"]),
            int(enc["max_depth"]),
            int(enc["n_stages"]),
            tuple(enc["resolutions"]),
            tuple(enc.get("stage_depths", ())),
        )
        model = AccuracyPredictor(encoder, int(doc["hidden_size"]), int(doc["n_layers"]))
        state, supernet, metrics = doc["state_dict"], doc.get("supernet"), dict(doc.get("metrics", {}))
    elif (
        isinstance(doc, dict) and doc and all(isinstance(k, str) and _TUTORIAL_KEY.fullmatch(k) for k in doc)
    ):
        model, state, supernet, metrics = *_from_tutorial(doc, path), None, {}
    elif isinstance(doc, dict) and "layers.0.0.weight" in doc.get("state_dict", doc):
        state = doc.get("state_dict", doc)
        if space is None:
            raise CheckpointError(f"{path} is a bare state dict", hint="name the supernet it was trained for")
        base = ArchEncoder.for_space(space)
        n_r = state["layers.0.0.weight"].shape[1] - (base.n_dim - len(base.resolutions))
        if n_r != len(space.resolutions):
            raise CheckpointError(
                f"predictor {path} encodes {n_r} resolutions; the space has {len(space.resolutions)}",
                hint="save it with ofa_edge.accuracy.predictor.save_predictor and its resolution list",
            )
        hidden = state["layers.0.0.weight"].shape[0]
        n_layers = sum(1 for k in state if k.endswith(".0.weight"))
        model, supernet, metrics = AccuracyPredictor(base, hidden, n_layers), None, {}
    else:
        raise CheckpointError(f"{path} is not an accuracy predictor", hint="pass a file from fit_predictor")
    return LoadedPredictor(fill_predictor(model, state, path), supernet, metrics)


def read_predictor_file(path: Path) -> Any:
    """What a predictor file holds (read with ``weights_only=True``), or a one-line error."""
    if not path.is_file():
        raise CheckpointError(f"predictor file {path} does not exist", hint="check --predictor")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file gets the same one-line answer
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"cannot read predictor {path}: {first}") from None


def fill_predictor(
    model: AccuracyPredictor[EncoderT], state: dict[str, Any], path: Path
) -> AccuracyPredictor[EncoderT]:
    """``model`` with the weights ``state`` (read from ``path``), in eval mode, or a one-line error."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(
            f"predictor {path} does not fit its own shape: {str(err).splitlines()[0]}"
        ) from None
    return model.eval()


def _from_tutorial(state: dict[str, torch.Tensor], path: Path) -> tuple[AccuracyPredictor, dict[str, Any]]:
    """An empty predictor of MIT's tutorial shape, and the tutorial ``state`` in its keys and
    layout (see the module docstring): the same predictions at ``TUTORIAL_RESOLUTIONS``."""
    encoder = ArchEncoder((3, 5, 7), (3, 4, 6), 4, 5, TUTORIAL_RESOLUTIONS)
    n_slots = encoder.n_dim - len(TUTORIAL_RESOLUTIONS)
    linears = sorted({int(k.split(".")[0]) for k in state})
    first = state.get(f"{linears[0]}.weight")
    if len(linears) < 2 or first is None or first.shape[-1] != TUTORIAL_FEATURES:
        raise CheckpointError(
            f"{path} is not MIT's tutorial accuracy predictor ({TUTORIAL_FEATURES} input features)",
            hint="pass a file from fit_predictor or MIT's acc_predictor.pth",
        )
    r_cols = [n_slots + (r - TUTORIAL_FIRST_R) // 16 for r in TUTORIAL_RESOLUTIONS]
    ours = {
        f"layers.{i}.0.{k}": state.get(f"{n}.{k}") for i, n in enumerate(linears) for k in ("weight", "bias")
    }
    ours["layers.0.0.weight"] = torch.cat([first[:, r_cols], first[:, :n_slots]], dim=1)
    head = len(linears) - 1
    ours[f"layers.{head}.weight"] = ours.pop(f"layers.{head}.0.weight")
    ours["base_acc"] = ours.pop(f"layers.{head}.0.bias")
    model = AccuracyPredictor(encoder, first.shape[0], head)
    return model, {k: v for k, v in ours.items() if v is not None}  # a missing key: load_state_dict names it


#: Predictor readers of the families whose predictors are not MBConv's (``load_predictor``), by
#: family name; their modules register them when imported.
_FAMILY_LOADERS: dict[str, Callable[[Path, Any], AccuracyPredictor]] = {}
_LOADER_MODULES = ("ofa_edge.accuracy.resnet_predictor",)


def register_predictor_loader(family: str, loader: Callable[[Path, Any], AccuracyPredictor]) -> None:
    """Read predictors of ``family``'s supernets with ``loader(path, space)``."""
    _FAMILY_LOADERS[family] = loader


def predictor_for(supernet: str, space: Any, path: Path | None = None) -> AccuracyPredictor:
    """The predictor at ``path``, else the one shipped for ``supernet``, else MIT's for it from the
    registry (downloaded on first use), read by its family's reader; refused if it was trained
    for another supernet. ``space`` is the supernet's (its family's type)."""
    from importlib import resources

    from ofa_edge.supernet.registry import get_supernet_info, predictor_path

    info = get_supernet_info(supernet)
    if path is None:
        shipped = Path(str(resources.files("ofa_edge") / "weights" / f"{supernet}.predictor.pt"))
        path = shipped if shipped.is_file() else predictor_path(info)
        if path is None:
            raise CheckpointError(
                f"no accuracy predictor is shipped for {supernet} (expected {shipped})",
                hint="pass --predictor PATH, or --objective macs to maximize MACs instead",
            )
    for module in _LOADER_MODULES:
        importlib.import_module(module)
    if info.spec.family in _FAMILY_LOADERS:
        return _FAMILY_LOADERS[info.spec.family](path, space)
    loaded = load_predictor(path, space)
    if loaded.supernet not in (None, supernet):
        raise CheckpointError(
            f"predictor {path} was trained for {loaded.supernet}, not {supernet}",
            hint="pass the predictor of this supernet",
        )
    return loaded.predictor
