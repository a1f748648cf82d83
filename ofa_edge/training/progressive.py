"""Progressive shrinking (OFA's training recipe), checkpointed for exact resume, on one process
or many (``torchrun``: DDP-style data parallelism, gloo on CPUs, NCCL on GPUs).

Phases (a recipe's, see :mod:`ofa_edge.training.config`): the full network (the teacher), then
elastic kernel, elastic depth and elastic expand. Every phase after the first distills from a
frozen copy of the trained full network and accumulates gradients over several sampled subnets
per step. Each batch trains at one resolution drawn from the space.

All randomness (shuffle order, augmentation, subnet and resolution draws) derives from
``(seed, phase, epoch, step)``, so a checkpoint needs no RNG state: a run killed at any point
and restarted with the same command continues exactly where its last checkpoint stood.

Many processes: every rank draws the same global batch and the same subnets (the seeds above),
computes on its own slice of the batch, and the gradients of all the step's subnets are summed
over the ranks in one all-reduce before the optimizer step, so every rank holds the same weights.
BatchNorm normalizes with the statistics of each forward's own images (per rank, as MIT's
Horovod runs did: no extra all-reduce per layer); a recipe's ``micro_batch`` fixes that batch,
and with it a run computes the same on any number of processes. The running statistics are
averaged over the ranks at each epoch's end. Rank 0 alone validates, logs and writes checkpoints.
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
from itertools import zip_longest
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ofa_edge.accuracy.measure import subnet_top1
from ofa_edge.data import ImageArray, batches, held_out_count, resize, split_train_val
from ofa_edge.distributed import Group
from ofa_edge.errors import CheckpointError, ConfigError
from ofa_edge.files import atomic_path, copy_atomic
from ofa_edge.supernet import ArchConfig, OFAMobileNetV3
from ofa_edge.training.config import CHECKPOINT_VERSION, Phase, TrainConfig, layout_of
from ofa_edge.training.curve import CURVE_FILE, plot_curve
from ofa_edge.training.init import init_backbone, init_spec


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
    # Each start of the run with another process count: where it started, on how many processes,
    # with which per-forward batch (what a change of process count changes in the run's math).
    processes: list[dict[str, Any]] = field(default_factory=list)
    # Each resume under a recipe whose not-yet-started phases differ: where, and the phases before.
    recipe_changes: list[dict[str, Any]] = field(default_factory=list)


def can_resume(saved: TrainConfig, config: TrainConfig, state: dict[str, Any]) -> bool:
    """Whether a run saved under ``saved`` at ``state`` may go on under ``config``: every setting
    and every phase already begun must be the same; the phases still ahead may be edited."""
    begun = state["phase"] + (1 if state["epoch"] or state["step"] else 0)
    return (
        dataclasses.replace(saved, phases=()) == dataclasses.replace(config, phases=())
        and saved.phases[:begun] == config.phases[:begun]
        and len(config.phases) >= begun
    )


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


def fit_config(config: TrainConfig, train: ImageArray) -> TrainConfig:
    """``config`` for dataset ``train``: its class count from the data's class folders and its
    layout from ``config.init`` when that names a supernet (registry entry or entry file)."""
    layout: dict[str, Any] = {"n_classes": len(train.classes)}
    spec = init_spec(config.init) if config.init is not None else None
    if spec is not None:
        layout = {**layout_of(spec), **layout, "resolutions": config.resolutions}
    return dataclasses.replace(config, **layout)


def check_counts(config: TrainConfig, n_images: int, processes: int) -> tuple[int, int]:
    """(images per process per step, images per forward) for ``config`` on ``n_images`` training
    images over ``processes``: numbers that do not fit fail here, before any training."""
    val = config.val_images if config.val_images is not None else held_out_count(n_images)
    trained = min(n_images - val, config.train_images or n_images)
    per_process, rest = divmod(config.batch_size, processes)
    micro = config.micro_batch or per_process
    problem = None
    if val < 1 or trained < 1:
        problem = f"holding out {val} of {n_images} images for validation leaves {max(trained, 0)}"
    elif trained < config.batch_size:
        problem = f"{trained} images to train on are fewer than one batch of {config.batch_size}"
    elif rest or per_process % micro:
        problem = (
            f"a batch of {config.batch_size} does not split into {processes} processes "
            f"x micro-batches of {micro}"
        )
    if problem:
        raise ConfigError(
            f"the recipe does not fit the data: {problem}",
            hint="set batch_size, micro_batch, val_images or train_images in a recipe file "
            "(ofa-edge train --recipe FILE.toml), or add images",
        )
    return per_process, micro


class Trainer:
    """Runs (or resumes) a progressive-shrinking run in ``run_dir``, as one rank of ``group``."""

    def __init__(
        self,
        config: TrainConfig,
        train: ImageArray,
        run_dir: Path,
        checkpoint_minutes: float = 5.0,
        log: Callable[[str], None] = print,
        group: Group | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """``progress(steps_done, steps_total)`` follows the whole run's optimizer steps."""
        self.config, self.run_dir, self.log = config, Path(run_dir), log
        self.group = group or Group()
        self.progress = progress
        if config.n_classes != len(train.classes):
            raise ConfigError(
                f"the config has {config.n_classes} classes, the data {len(train.classes)}",
                hint="let fit_config set the class count from the data",
            )
        self.per_process, self.micro_batch = check_counts(config, len(train), self.group.world_size)
        self.checkpoint_seconds = checkpoint_minutes * 60
        self.train, self.val = split_train_val(train, config.val_images, config.train_images)
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)  # the initial weights belong to the config too
            self.net = self._build()
        self.teacher: OFAMobileNetV3 | None = None
        self.state = RunState()
        self.optimizer: torch.optim.SGD | None = None
        self.ckpt_path = self.run_dir / "checkpoint.pt"
        self._load()

    def _build(self) -> OFAMobileNetV3:
        return self.config.build().to(self.group.device, memory_format=torch.channels_last)

    # --- checkpoints -----------------------------------------------------------------------

    def _load(self) -> None:
        """Resume from ``checkpoint.pt``, else (unreadable or missing) from ``checkpoint.pt.prev``,
        saying so: a folder holding checkpoints never starts over silently. Rank 0 reads the
        files and hands the checkpoint to the other ranks (which may run on other machines)."""
        found: tuple[dict[str, Any] | None, Exception | None] = (None, None)
        if self.group.is_main:
            try:
                found = (self._read_checkpoint(), None)
            except (CheckpointError, ConfigError) as err:
                found = (None, err)
        ckpt, error = self.group.broadcast(found)
        if error is not None:
            raise error
        if ckpt is None:
            if self.config.init is not None:  # a new run that starts from another supernet
                self.log(f"initialized from {init_backbone(self.net, self.config.init)}")
            return
        self.net.load_state_dict(ckpt["model"])
        if ckpt["teacher"] is not None:
            self.teacher = self._build()
            self.teacher.load_state_dict(ckpt["teacher"])
            self.teacher.eval()
        self.state = RunState(**ckpt["state"])
        if ckpt["optimizer"] is not None:
            phase = self.config.phases[self.state.phase]
            self.optimizer = _optimizer(self.net, self.config, phase.lr)
            self.optimizer.load_state_dict(ckpt["optimizer"])

    def _read_checkpoint(self) -> dict[str, Any] | None:
        """This run's checkpoint (or its ``.prev``), None for a new run; errors name the fix."""
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
                return None  # a new run
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
        if ckpt.get("version") != CHECKPOINT_VERSION or not can_resume(saved, self.config, ckpt["state"]):
            raise ConfigError(
                f"{self.ckpt_path} was written by another training config",
                hint="resume with the same recipe (only phases not yet started may change), "
                "or use a new --out folder",
            )
        ckpt = dict(ckpt)
        if saved.phases != self.config.phases:
            where = {k: ckpt["state"][k] for k in ("phase", "epoch", "step")}
            first = next(
                i for i, (a, b) in enumerate(zip_longest(saved.phases, self.config.phases)) if a != b
            )
            before = [dataclasses.asdict(p) for p in saved.phases]
            changes = [*ckpt["state"].get("recipe_changes", []), {**where, "phases_before": before}]
            ckpt["state"] = {**ckpt["state"], "recipe_changes": changes}
            self.log(f"the recipe's phases changed from phase {first} on; resuming at {where}")
        return ckpt

    def save(self) -> None:
        """Write the checkpoint atomically (rank 0), keeping the previous one as ``.prev``: a kill
        at any instant leaves a complete ``checkpoint.pt`` (the new one replaces it in one step)."""
        if not self.group.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cpu = lambda module: {k: v.cpu() for k, v in module.state_dict().items()}  # noqa: E731
        with atomic_path(self.ckpt_path) as tmp:
            torch.save(
                {
                    "version": CHECKPOINT_VERSION,
                    "config": self.config.to_dict(),
                    "model": cpu(self.net),
                    "teacher": None if self.teacher is None else cpu(self.teacher),
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
        self._note_processes()
        if self.done:
            self._plot_curve()  # a run finished before this call: draw its curve again
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
                if self.progress is not None:  # over the whole run: its ETA is the run's
                    epochs = [p.epochs for p in self.config.phases]
                    before = sum(epochs[: self.state.phase]) + self.state.epoch
                    self.progress(before * steps + step + 1, sum(epochs) * steps)
                now = time.monotonic()
                stop = self.group.any(stop_after_seconds is not None and now - started > stop_after_seconds)
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
            self._plot_curve()
        return True

    def _plot_curve(self) -> None:
        """Redraw ``curve.png`` in the run folder from the epoch log (rank 0)."""
        if self.group.is_main and self.state.log:
            plot_curve(self.state.log, self.run_dir / CURVE_FILE)

    def _note_processes(self) -> None:
        """Record a start on another process count (or micro-batch) than the last one, and say so."""
        now = {"processes": self.group.world_size, "micro_batch": self.micro_batch}
        last = self.state.processes[-1] if self.state.processes else None
        if last is not None and {k: last[k] for k in now} == now:
            return
        where = {"phase": self.state.phase, "epoch": self.state.epoch, "step": self.state.step}
        self.state.processes.append({**now, **where})
        if last is not None:
            self.log(
                f"resuming on {now['processes']} process(es), micro-batch {now['micro_batch']} "
                f"(was {last['processes']}, {last['micro_batch']}) at {where}"
            )

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
        """One optimizer step on global batch ``(x, y)``: this rank's slice of it, in forwards of
        ``micro_batch`` images, for each of the step's subnets; gradients summed over all ranks.
        Returns the step's mean loss over the subnets (the whole batch's, on every rank)."""
        assert self.optimizer is not None
        lr = _lr(phase, self.state.epoch * steps + step, steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        rng = _rng(self.config, self.state.phase, self.state.epoch, step)
        r = rng.choice(self.config.resolutions)
        archs = [sample_phase_arch(self.net, phase, rng, r) for _ in range(phase.subnets_per_step)]
        first = self.group.rank * self.per_process
        device = self.group.device
        x = resize(x[first : first + self.per_process], r).to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        y = y[first : first + self.per_process].to(device)
        chunks = list(zip(x.split(self.micro_batch), y.split(self.micro_batch)))
        share = self.micro_batch / self.config.batch_size  # one forward's part of the batch mean
        self.net.train()
        soft: list[torch.Tensor | None] = [None] * len(chunks)
        if phase.distill:
            assert self.teacher is not None
            with torch.no_grad():
                soft = [F.softmax(self.teacher(xs), dim=1) for xs, _ in chunks]
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros(1, device=device)
        for arch in archs:
            self.net.set_arch(arch)
            for (xs, ys), targets in zip(chunks, soft):
                out = self.net(xs)
                loss = F.cross_entropy(out, ys, label_smoothing=self.config.label_smoothing)
                if targets is not None:
                    loss = loss + self.config.kd_ratio * -(targets * F.log_softmax(out, 1)).sum(1).mean()
                (loss * share).backward()
                total += loss.detach() * share
        grads = [p.grad for p in self.net.parameters() if p.grad is not None]
        self.group.all_reduce_sum([*grads, total])
        self.optimizer.step()
        return float(total) / phase.subnets_per_step

    def _end_epoch(self, phase: Phase, steps: int) -> None:
        self._average_bn_statistics()
        if self.group.is_main:
            self._validate(phase, steps)
        self.state.epoch += 1
        self.state.step = 0
        self.state.epoch_loss_sum = self.state.epoch_seconds = self.state.epoch_cpu_seconds = 0.0
        if self.state.epoch >= phase.epochs:
            self.state.phase += 1
            self.state.epoch = 0
            self.optimizer = None

    def _average_bn_statistics(self) -> None:
        """Every rank's BatchNorm running statistics replaced by their mean over the ranks."""
        if self.group.world_size == 1:
            return
        stats = [b for n, b in self.net.named_buffers() if n.endswith(("running_mean", "running_var"))]
        self.group.all_reduce_sum(stats)
        for b in stats:
            b.div_(self.group.world_size)

    def _validate(self, phase: Phase, steps: int) -> None:
        """Log the epoch: loss, top-1 of the largest and smallest subnets on held-out images."""
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
