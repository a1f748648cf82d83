"""Training images per second on 1 process and on 2 (torchrun, gloo), measured in the same run.

Each configuration runs ``ofa-edge train`` for one teacher epoch of the same recipe on the same
synthetic ImageFolder and reads the run's training seconds (steps only, validation excluded):

- 1 process, 1 torch thread: the baseline;
- 1 process, 2 torch threads: what one process makes of both cores;
- 2 processes (torchrun), 1 thread each: data parallelism, gradients all-reduced over gloo.

On this 2-core machine the figures show what data parallelism costs and gains on CPUs (the
all-reduce and the duplicated batch preparation against the second core's work); they cannot
show scaling across GPUs or machines, where the network and NCCL set the cost.

    python -m benchmarks.train_throughput [--images 2560] [--width 0.5] [--batch 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ofa_edge.testing.images import write_image_folder

RECIPE = """format_version = 1
width_mult = {width}
resolutions = [32]
batch_size = {batch}
micro_batch = {micro}

[[phases]]
name = "teacher"
epochs = 1
lr = 0.05
ks = [7]
e = [6]
d = [4]
distill = false
"""


def images_per_second(data: Path, recipe: Path, out: Path, processes: int, threads: int, batch: int) -> float:
    """Images trained per second of training steps, from the run's own clock."""
    ofa_edge = str(Path(sys.executable).with_name("ofa-edge"))
    cmd = [ofa_edge, "train", "--data", str(data), "--recipe", str(recipe), "--out", str(out), "--json",
           "--host-threads", str(threads)]  # fmt: skip
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "--no-python", *cmd]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    result = json.loads(res.stdout)
    trained = (len(list(data.glob("train/*/*.png"))) * 9 // 10) // batch * batch  # a tenth held out
    return trained / result["train_seconds"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2560, help="training images (10 classes)")
    parser.add_argument("--width", type=float, default=0.5, help="supernet width multiplier")
    parser.add_argument("--batch", type=int, default=128, help="global batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_image_folder(root / "data", classes=10, per_class=args.images // 10)
        recipe = root / "recipe.toml"
        recipe.write_text(RECIPE.format(width=args.width, batch=args.batch, micro=args.batch // 2))
        print(f"{args.images} images at 32 px, OFA-MBv3 w{args.width} (largest subnet), batch {args.batch}")
        base = None
        for processes, threads in ((1, 1), (1, 2), (2, 1)):
            rate = images_per_second(
                data, recipe, root / f"run{processes}x{threads}", processes, threads, args.batch
            )
            base = base or rate
            print(
                f"  {processes} process(es) x {threads} thread(s): {rate:7.1f} images/s  ({rate / base:.2f}x)"
            )
