"""Progressive shrinking (OFA's training recipe) on a CPU, checkpointed for exact resume.

Phases: the full network (the teacher), then elastic kernel, elastic depth (3-4, then 2-4) and
elastic expand (4-6, then 3-6, hidden channels sorted by importance first). Every phase after
the first distills from a frozen copy of the trained full network and accumulates gradients over
several sampled subnets per step. Each batch trains at one resolution drawn from the space.

All randomness (shuffle order, augmentation, subnet and resolution draws) derives from
``(seed, phase, epoch, step)``, so a checkpoint needs no RNG state: a run killed at any point
and restarted with the same command continues exactly where its last checkpoint stood.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ofa_edge.accuracy.measure import subnet_top1
from ofa_edge.data import VAL_IMAGES, ImageArray, batches, resize, split_train_val
from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.files import atomic_path, copy_atomic
from ofa_edge.supernet import ArchConfig, OFAMobileNetV3, SearchSpace
from ofa_edge.supernet.preprocessing import CIFAR10, Preprocessing
from ofa_edge.supernet.registry import CIFAR10_V2_SPEC
from ofa_edge.supernet.spec import MIT_STAGE_STRIDES, MIT_STEM_STRIDE, MBv3Spec

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Phase:
    """One stage of progressive shrinking: which choices are elastic, for how long, how fast."""

    name: str
    epochs: int
    lr: float
    ks: tuple[int, ...]
    e: tuple[float, ...]
    d: tuple[int, ...]
    subnets_per_step: int = 1
    distill: bool = True
    sort_channels_stage: int | None = None  # expand phases: OFA's re_organize_middle_weights
    warmup_epochs: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; stored in its checkpoint and checked on resume."""

    width_mult: float = 0.5
    n_classes: int = 10
    resolutions: tuple[int, ...] = (24, 28, 32, 36, 40)
    stem_stride: int = MIT_STEM_STRIDE  # the layout (see MBv3Spec); MIT's unless a recipe says so
    stage_strides: tuple[int, ...] = MIT_STAGE_STRIDES
    batch_size: int = 128
    weight_decay: float = 4e-5
    momentum: float = 0.9
    label_smoothing: float = 0.1
    kd_ratio: float = 1.0
    val_images: int = VAL_IMAGES  # held out of the training split, never trained on
    train_images: int | None = None  # None: every training image not held out
    seed: int = 0
    phases: tuple[Phase, ...] = field(default_factory=tuple)
    # How images are normalized (the trained supernet's registry entry must say the same).
    # CIFAR-10's, as before the field existed, so the configs of earlier runs compare equal.
    preprocessing: Preprocessing = CIFAR10

    def build(self) -> OFAMobileNetV3:
        """The untrained supernet this run trains (its layout is part of the config)."""
        space = SearchSpace(resolutions=self.resolutions)
        spec = MBv3Spec(self.width_mult, self.n_classes, space, self.stem_stride, self.stage_strides)
        return OFAMobileNetV3.from_spec(spec)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        phases: list[dict[str, Any]] = data["phases"]
        data["phases"] = tuple(Phase(**_tuples(p)) for p in phases)
        for key in ("resolutions", "stage_strides"):
            if key in data:  # stage_strides: absent from runs started before layouts existed
                data[key] = tuple(data[key])
        if "preprocessing" in data:  # absent from runs started before it was configurable
            data["preprocessing"] = Preprocessing(**_tuples(data["preprocessing"]))
        return cls(**data)


def layout_of(spec: MBv3Spec) -> dict[str, Any]:
    """The ``TrainConfig`` fields that fix the supernet trained: those of the registry's ``spec``."""
    return {
        "width_mult": spec.width_mult,
        "n_classes": spec.n_classes,
        "resolutions": spec.space.resolutions,
        "stem_stride": spec.stem_stride,
        "stage_strides": spec.stage_strides,
    }


def _tuples(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON's lists back as the tuples a frozen config holds."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def progressive_shrinking(
    epochs: tuple[int, int, int, int, int, int] = (20, 4, 1, 4, 1, 4),
    lrs: tuple[float, ...] = (0.1, 0.03, 0.01, 0.02, 0.01, 0.02),
    **config: Any,
) -> TrainConfig:
    """OFA's six phases (teacher, kernel, depth x2, expand x2) with the given epochs and LRs."""
    ks, e, d = (3, 5, 7), (3, 4, 6), (2, 3, 4)
    phases = (
        Phase("teacher", epochs[0], lrs[0], (7,), (6,), (4,), distill=False, warmup_epochs=1),
        Phase("kernel", epochs[1], lrs[1], ks, (6,), (4,)),
        Phase("depth-1", epochs[2], lrs[2], ks, (6,), (3, 4), subnets_per_step=2),
        Phase("depth-2", epochs[3], lrs[3], ks, (6,), d, subnets_per_step=2),
        Phase("expand-1", epochs[4], lrs[4], ks, (4, 6), d, 2, sort_channels_stage=0),
        Phase("expand-2", epochs[5], lrs[5], ks, e, d, 2, sort_channels_stage=1),
    )
    return TrainConfig(phases=phases, **config)


#: Named recipes for ``ofa-edge train --recipe``.
RECIPES: dict[str, Callable[[], TrainConfig]] = {
    "cifar10-default": progressive_shrinking,
    # Issue 20 (ofa-mbv3-cifar10-v2): stem stride 1, so 32-px images end as a 2x2 map, not 1x1
    # (~370 CPU-s per teacher epoch on 1 thread, 2.5x the MIT layout); a 3x longer teacher and
    # longer shrinking phases, about 13 CPU-hours in all; CIFAR's usual weight decay.
    "cifar10-v2": lambda: progressive_shrinking(
        epochs=(60, 10, 3, 10, 3, 12), weight_decay=5e-4, **layout_of(CIFAR10_V2_SPEC)
    ),
    # A minutes-long run on a data subset: for tests and to try the pipeline end to end.
    "smoke": lambda: progressive_shrinking(
        epochs=(1, 1, 1, 1, 1, 1),
        train_images=512,
        val_images=256,
        batch_size=64,
        resolutions=(24, 32),
    ),
}


@dataclass
class RunState:
    """Where a run stands: the next (phase, epoch, step) to execute, and the metrics so far."""

    phase: int = 0
    epoch: int = 0
    step: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    epoch_loss_sum: float = 0.0  # over the current epoch's steps, across resumes
    epoch_seconds: float = 0.0
    # CPU time of the training process (all its threads): the budget on a shared machine,
    # where wall time depends on the neighbours.
    train_cpu_seconds: float = 0.0
    epoch_cpu_seconds: float = 0.0


def _rng(config: TrainConfig, *parts: int) -> random.Random:
    return random.Random(hash((config.seed, *parts)) & 0xFFFFFFFF)


def _torch_gen(config: TrainConfig, *parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(hash((config.seed, *parts)) & 0x7FFFFFFF)


def sample_phase_arch(net: OFAMobileNetV3, phase: Phase, rng: random.Random, r: int) -> ArchConfig:
    space = net.space
    return ArchConfig(
        ks=tuple(rng.choice(phase.ks) for _ in range(space.n_blocks)),
        e=tuple(rng.choice(phase.e) for _ in range(space.n_blocks)),
        d=tuple(rng.choice(phase.d) for _ in range(space.n_stages)),
        r=r,
    )


def _lr(phase: Phase, step: int, steps_per_epoch: int) -> float:
    total = phase.epochs * steps_per_epoch
    warm = phase.warmup_epochs * steps_per_epoch
    if step < warm:
        return phase.lr * (step + 1) / warm
    return 0.5 * phase.lr * (1 + math.cos(math.pi * (step - warm) / max(1.0, total - warm)))


def _optimizer(net: torch.nn.Module, config: TrainConfig, lr: float) -> torch.optim.SGD:
    decay = [p for n, p in net.named_parameters() if p.dim() > 1 and not n.endswith("_matrix")]
    other = [p for n, p in net.named_parameters() if not (p.dim() > 1 and not n.endswith("_matrix"))]
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": other, "weight_decay": 0}],
        lr=lr,
        momentum=config.momentum,
        nesterov=True,
    )


class Trainer:
    """Runs (or resumes) a progressive-shrinking run in ``run_dir``."""

    def __init__(
        self,
        config: TrainConfig,
        train: ImageArray,
        run_dir: Path,
        checkpoint_minutes: float = 5.0,
        log: Callable[[str], None] = print,
    ) -> None:
        self.config, self.run_dir, self.log = config, Path(run_dir), log
        self.checkpoint_seconds = checkpoint_minutes * 60
        self.train, self.val = split_train_val(train, config.val_images, config.train_images)
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)  # the initial weights belong to the config too
            self.net = config.build().to(memory_format=torch.channels_last)
        self.teacher: OFAMobileNetV3 | None = None
        self.state = RunState()
        self.optimizer: torch.optim.SGD | None = None
        self.ckpt_path = self.run_dir / "checkpoint.pt"
        self._load()

    # --- checkpoints -----------------------------------------------------------------------

    def _load(self) -> None:
        """Resume from ``checkpoint.pt``, else (unreadable or missing) from ``checkpoint.pt.prev``,
        saying so: a folder holding checkpoints never starts over silently."""
        prev = self.ckpt_path.with_suffix(".pt.prev")
        problems: list[str] = []
        for path in (self.ckpt_path, prev):
            if not path.exists():
                continue
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=False)
                saved = TrainConfig.from_dict(ckpt["config"])
                break
            except Exception as err:
                problems.append(f"{path.name}: {str(err).splitlines()[0] if str(err) else repr(err)}")
        else:
            if not problems:
                return  # a new run
            raise CheckpointError(
                f"cannot resume from {self.ckpt_path} ({'; '.join(problems)})",
                hint=f"move the checkpoint files in {self.run_dir} away to start over",
            )
        if path == prev:
            why = "missing"
            if problems:  # moved out of the way of the next save, kept for a look
                bad = self.ckpt_path.replace(self.ckpt_path.with_suffix(".pt.unreadable"))
                why = f"unreadable ({problems[0].split(': ', 1)[1]}; kept as {bad.name})"
            self.log(f"{self.ckpt_path} is {why}: resuming from {prev.name}, the checkpoint before it")
        if ckpt.get("version") != CHECKPOINT_VERSION or saved != self.config:
            raise ConfigError(
                f"{self.ckpt_path} was written by another training config",
                hint="resume with the same recipe, or use a new --out folder",
            )
        self.net.load_state_dict(ckpt["model"])
        if ckpt["teacher"] is not None:
            self.teacher = self.config.build().to(memory_format=torch.channels_last)
            self.teacher.load_state_dict(ckpt["teacher"])
            self.teacher.eval()
        self.state = RunState(**ckpt["state"])
        if ckpt["optimizer"] is not None:
            phase = self.config.phases[self.state.phase]
            self.optimizer = _optimizer(self.net, self.config, phase.lr)
            self.optimizer.load_state_dict(ckpt["optimizer"])

    def save(self) -> None:
        """Write the checkpoint atomically, keeping the previous one as ``.prev``: a kill at any
        instant leaves a complete ``checkpoint.pt`` (the new one replaces it in one step)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.ckpt_path) as tmp:
            torch.save(
                {
                    "version": CHECKPOINT_VERSION,
                    "config": self.config.to_dict(),
                    "model": self.net.state_dict(),
                    "teacher": None if self.teacher is None else self.teacher.state_dict(),
                    "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
                    "state": dataclasses.asdict(self.state),
                },
                tmp,
            )
            if self.ckpt_path.exists():
                copy_atomic(self.ckpt_path, self.ckpt_path.with_suffix(".pt.prev"))

    # --- the loop ----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state.phase >= len(self.config.phases)

    def run(self, stop_after_seconds: float | None = None) -> bool:
        """Train until finished (True) or until ``stop_after_seconds`` passed (False, saved)."""
        started = time.monotonic()
        last_save, last_cpu = started, time.process_time()
        while not self.done:
            phase = self.config.phases[self.state.phase]
            self._enter_phase(phase)
            steps = len(self.train) // self.config.batch_size
            gen = _torch_gen(self.config, self.state.phase, self.state.epoch)
            for step, (x, y) in enumerate(
                batches(
                    self.train,
                    self.config.batch_size,
                    self.config.preprocessing,
                    shuffle=True,
                    generator=gen,
                    train_augment=True,
                    drop_last=True,
                )
            ):
                if step < self.state.step:
                    continue  # resuming mid-epoch: same order, already trained
                self.state.epoch_loss_sum += self._train_step(phase, step, steps, x, y)
                self.state.step = step + 1
                now = time.monotonic()
                stop = stop_after_seconds is not None and now - started > stop_after_seconds
                if stop or now - last_save > self.checkpoint_seconds:
                    last_cpu = self._account(now - last_save, last_cpu)
                    last_save = now
                    self.save()
                if stop:
                    return False
            now = time.monotonic()
            last_cpu = self._account(now - last_save, last_cpu)
            last_save = now
            self._end_epoch(phase, steps)
            self.save()
        return True

    def _account(self, seconds: float, cpu_since: float) -> float:
        """Add ``seconds`` of wall time and the CPU time since ``cpu_since``; the CPU clock now."""
        cpu = time.process_time()
        self.state.train_seconds += seconds
        self.state.epoch_seconds += seconds
        self.state.train_cpu_seconds += cpu - cpu_since
        self.state.epoch_cpu_seconds += cpu - cpu_since
        return cpu

    def _enter_phase(self, phase: Phase) -> None:
        if self.optimizer is not None:
            return
        if phase.distill and self.teacher is None:
            self.teacher = copy.deepcopy(self.net).eval()
            self.teacher.set_max_net()
        if phase.sort_channels_stage is not None and self.state.epoch == 0 and self.state.step == 0:
            self.net.re_organize_middle_weights(phase.sort_channels_stage)
        self.optimizer = _optimizer(self.net, self.config, phase.lr)

    def _train_step(self, phase: Phase, step: int, steps: int, x: torch.Tensor, y: torch.Tensor) -> float:
        assert self.optimizer is not None
        lr = _lr(phase, self.state.epoch * steps + step, steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        rng = _rng(self.config, self.state.phase, self.state.epoch, step)
        r = rng.choice(self.config.resolutions)
        x = resize(x, r).contiguous(memory_format=torch.channels_last)
        self.net.train()
        soft = None
        if phase.distill:
            assert self.teacher is not None
            with torch.no_grad():
                soft = F.softmax(self.teacher(x), dim=1)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(phase.subnets_per_step):
            self.net.set_arch(sample_phase_arch(self.net, phase, rng, r))
            out = self.net(x)
            loss = F.cross_entropy(out, y, label_smoothing=self.config.label_smoothing)
            if soft is not None:
                loss = loss + self.config.kd_ratio * -(soft * F.log_softmax(out, 1)).sum(1).mean()
            loss.backward()
            total += float(loss.detach())
        self.optimizer.step()
        return total / phase.subnets_per_step

    def _end_epoch(self, phase: Phase, steps: int) -> None:
        space = self.net.space
        r = max(space.resolutions)
        val_subset = self.val.subset(1000)
        accs = {
            size: subnet_top1(self.net, arch, self.train, val_subset, self.config.preprocessing)
            for size, arch in (("max", space.max_arch(r)), ("min", space.min_arch(r)))
        }
        self.net.set_max_net()
        entry = {
            "phase": phase.name,
            "epoch": self.state.epoch + 1,
            "epochs": phase.epochs,
            "loss": self.state.epoch_loss_sum / max(1, steps),
            "val_top1_max": accs["max"],
            "val_top1_min": accs["min"],
            "epoch_seconds": round(self.state.epoch_seconds, 1),
            "epoch_cpu_seconds": round(self.state.epoch_cpu_seconds, 1),
            "train_cpu_seconds": round(self.state.train_cpu_seconds, 1),
        }
        self.state.log.append(entry)
        self.log(json.dumps(entry))
        self.state.epoch += 1
        self.state.step = 0
        self.state.epoch_loss_sum = self.state.epoch_seconds = self.state.epoch_cpu_seconds = 0.0
        if self.state.epoch >= phase.epochs:
            self.state.phase += 1
            self.state.epoch = 0
            self.optimizer = None
