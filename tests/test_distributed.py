"""Training on several processes (torchrun, gloo): the same weights as one process, resumable on
another process count, and ``--init`` from a checkpoint in MIT's format.

BatchNorm normalizes per forward (per rank), so the equivalence holds for a recipe with a fixed
``micro_batch``: one process then runs the batch as two forwards of the size each of the two
ranks runs. Phases without distillation keep the comparison to the gradients: a distilled phase
adds a teacher whose running statistics are averaged over ranks at epoch ends, not per step.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ofa_edge.testing.images import write_image_folder as _image_folder

OFA_EDGE = str(Path(sys.executable).with_name("ofa-edge"))

RECIPE = """format_version = 1
width_mult = 0.35
resolutions = [24, 32]
batch_size = 64
micro_batch = 32
{extra}

[[phases]]
name = "teacher"
epochs = 1
lr = {lr}
ks = [7]
e = [6]
d = [4]
distill = false

[[phases]]
name = "depth"
epochs = 1
lr = {lr}
ks = [3, 5, 7]
e = [4, 6]
d = [2, 3, 4]
subnets_per_step = 2
distill = false
"""


def _train(
    data: Path, recipe: Path, out: Path, processes: int = 1, *extra: str
) -> subprocess.CompletedProcess:
    """``ofa-edge train`` on ``processes`` processes (torchrun's standalone rendezvous on loopback)."""
    cmd = [OFA_EDGE, "train", "--data", str(data), "--recipe", str(recipe), "--out", str(out), *extra]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "--no-python", *cmd]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)


def _assert_same_weights(a: dict, b: dict) -> None:
    """Parameters equal within float tolerance (the ranks sum gradients in another order)."""
    params = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert params and set(a) == set(b)
    for k in params:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(data, recipe, the run trained on one process), shared by the tests below."""
    root = tmp_path_factory.mktemp("ddp")
    data = _image_folder(root / "data", classes=2, per_class=80)  # 16 held out, 144 trained: 2 steps/epoch
    recipe = root / "recipe.toml"
    recipe.write_text(RECIPE.format(extra="", lr=0.05))
    _train(data, recipe, root / "one")
    return data, recipe, root / "one"


def test_two_processes_train_the_weights_one_process_trains(
    setup: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    data, recipe, one = setup
    res = _train(data, recipe, tmp_path / "two", 2, "--json")
    two = _checkpoint(tmp_path / "two")
    assert two["state"]["phase"] == 2 and two["state"]["processes"][0]["processes"] == 2
    ref = _checkpoint(one)
    assert ref["state"]["processes"][0]["processes"] == 1
    _assert_same_weights(ref["model"], two["model"])
    assert not torch.equal(ref["model"]["classifier.linear.weight"], torch.zeros(1))  # trained, not empty
    # One result, from rank 0 (the other rank writes nothing), and per-epoch losses equal.
    assert res.stdout.count('"schema": "ofa-edge/train/1"') == 1
    for a, b in zip(ref["state"]["log"], two["state"]["log"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def test_run_resumes_on_another_process_count(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, recipe, one = setup
    _train(data, recipe, tmp_path / "run", 1, "--hours", "0")  # one step on one process, paused
    assert _checkpoint(tmp_path / "run")["state"]["step"] == 1
    res = _train(data, recipe, tmp_path / "run", 2)
    final = _checkpoint(tmp_path / "run")
    assert final["state"]["phase"] == 2
    starts = final["state"]["processes"]
    assert [(s["processes"], s["step"]) for s in starts] == [(1, 0), (2, 1)]
    assert "resuming on 2 process(es)" in res.stderr
    _assert_same_weights(_checkpoint(one)["model"], final["model"])


def test_init_from_a_checkpoint_in_mits_format(tmp_path: Path) -> None:
    """A new run starts from MIT-format weights (randomized: no download here): backbone loaded
    as is, a classifier for the data's 3 classes; lr 0 keeps the loaded weights untouched."""
    from ofa_edge.supernet import OFAMobileNetV3
    from ofa_edge.supernet.spec import MBv3Spec

    torch.manual_seed(3)
    mit = OFAMobileNetV3.from_spec(MBv3Spec(1.0, 1000))
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in mit.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "mit.pth.tar")
    data = _image_folder(tmp_path / "data", classes=3, per_class=30)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(extra="", lr=0.0).replace("width_mult = 0.35", "width_mult = 1.0"))
    recipe.write_text(recipe.read_text().replace("batch_size = 64\nmicro_batch = 32", "batch_size = 16"))
    res = _train(data, recipe, tmp_path / "run", 1, "--init", str(tmp_path / "mit.pth.tar"), "--hours", "0")
    assert "initialized from" in res.stderr
    model = _checkpoint(tmp_path / "run")["model"]
    assert model["classifier.linear.weight"].shape[0] == 3
    for k, v in state.items():
        if not k.startswith("classifier") and not k.endswith(
            ("running_mean", "running_var", "num_batches_tracked")
        ):
            assert torch.equal(model[k], v), k
