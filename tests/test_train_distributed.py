"""``torchrun --nproc_per_node 2 -m mrsynth train ... --device cpu``: gloo DDP, sharded data, one checkpoint set."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from test_train import make_store


def test_torchrun_two_cpu_ranks(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mrsynth",
        "train", "--data", str(store), "--scenario", "t1,t2->flair", "--arch", "agi-net", "--framework", "pix2pix",
        "--widths", "8,16,16,32", "--groups", "4", "--iters", "3", "--batch-size", "2", "--crop", "24",
        "--val-every", "3", "--save-every", "2", "--run-dir", str(run), "--device", "cpu", "--json",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sum(e["event"] == "done" for e in events) == 1  # rank 0 alone reports
    assert [e["iteration"] for e in events if e["event"] == "checkpoint"] == [2, 3]
    record = json.loads((run / "run.json").read_text())
    assert record["world_size"] == 2 and record["finished_at_iteration"] == 3
    rank0, rank1 = record["first_batch_by_rank"]
    assert len(rank0) == len(rank1) == 2 and not set(rank0) & set(rank1)  # the ranks read different slices
    names = sorted(p.name for p in run.iterdir())
    expected = ["best.safetensors", "last.safetensors", "log.csv", "resume.safetensors", "run.json"]
    if importlib.util.find_spec("tensorboard") is not None:  # TensorBoard logs are an optional extra
        expected.append("tensorboard")
    assert names == expected
    assert not list(run.glob("**/*.tmp"))
