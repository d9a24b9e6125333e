"""The training loop of every framework (:mod:`mrsynth.training.frameworks`), one process or many (DDP), resumable
bit for bit on CPU.

Rank 0 alone validates, logs and writes files, so a multi-GPU run writes one checkpoint set. Everything random is
a function of (seed, iteration): sample order and augmentation come from ``sampling.py``/``augment.py``, the
learning rate from :meth:`TrainConfig.lr_at`; the resume state holds model, optimiser, grad-scaler and RNG state and
the iteration, so ``resume=True`` continues exactly where an interrupted run stopped.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mrsynth.checkpoint import save_checkpoint
from mrsynth.devices import autocast_dtype
from mrsynth.errors import InputError
from mrsynth.io.atomic import atomic_output
from mrsynth.models import ModelConfig, build_model
from mrsynth.training import distributed
from mrsynth.training.augment import AugmentedPairs
from mrsynth.training.config import TrainConfig
from mrsynth.training.frameworks import build_framework
from mrsynth.training.runlog import RunLogger
from mrsynth.training.sampling import ShardedBatchSampler
from mrsynth.training.state import load_state, save_state

RESUME_FILE = "resume.safetensors"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"
RUN_FILE = "run.json"
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "mae": False}

Event = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    """What a run did; ``interrupted`` runs left a resume state and can be continued with ``resume=True``."""

    run_dir: Path
    iteration: int
    interrupted: bool
    losses: dict[str, float] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    wall_s: float = 0.0
    first_batches: list[list[int]] = field(default_factory=list)  # per rank: dataset indices of its first batch
    stop_signal: int | None = None  # SIGINT or SIGTERM for an interrupted run: the command exits 128 + it


class _StopFlag:
    """Turns SIGINT/SIGTERM into a request to stop after the current iteration (and save a resume state)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        self.signal = signum

    @contextmanager
    def installed(self) -> Iterator["_StopFlag"]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(flag)


def _is_better(metric: str, value: float, best: float | None) -> bool:
    if best is None or not np.isfinite(best):
        return bool(np.isfinite(value))
    return value > best if HIGHER_IS_BETTER[metric] else value < best


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")


def train(
    model_config: ModelConfig,
    train_set: Any,
    val_set: Any | None,
    run_dir: str | Path,
    config: TrainConfig,
    metadata: dict[str, Any],
    *,
    device: str = "auto",
    resume: bool = False,
    workers: int = 0,
    console: Any = None,
    on_event: Event | None = None,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a generator on ``(x, y)`` pairs and write checkpoints into ``run_dir``.

    ``metadata`` is the checkpoint metadata that does not depend on training (scenario, normalization,
    slice_size, voxel_size_mm, skull_stripped, and ``training`` provenance such as data and licence); the recipe,
    iteration and validation figures are added here. With ``resume=True`` the run's own recipe and architecture
    (from its resume state) are used and only ``config.iters`` may differ, to extend a finished run.
    ``console`` (rich, stderr) shows a progress bar on rank 0; ``on_event`` receives log/val/checkpoint records.
    """
    run_dir = Path(run_dir)
    info = distributed.setup(device)
    try:
        result = _train(model_config, train_set, val_set, run_dir, config, metadata, info, resume, workers, console,
                        on_event, on_iteration)
        # Leave together: a rank that tears its gloo connections down while rank 0 still writes files can make
        # rank 0 abort in its own teardown.
        distributed.barrier(info)
        return result
    finally:
        distributed.teardown()


def _train(
    model_config: ModelConfig,
    train_set: Any,
    val_set: Any | None,
    run_dir: Path,
    config: TrainConfig,
    metadata: dict[str, Any],
    info: distributed.DistInfo,
    resume: bool,
    workers: int,
    console: Any,
    on_event: Event | None,
    on_iteration: Callable[[int, dict[str, float]], None] | None,
) -> TrainResult:
    emit = on_event if (on_event is not None and info.is_main) else (lambda record: None)
    resume_path = run_dir / RESUME_FILE
    state: dict[str, Any] | None = None
    if resume:
        state = load_state(resume_path)
        model_config = ModelConfig.from_dict(state["model_config"])
        config = TrainConfig.from_dict({**state["train_config"], "iters": config.iters})
    elif resume_path.exists():
        raise InputError(run_dir, "already holds a training run", "pass --resume to continue it or choose another --run-dir")
    if len(train_set) == 0:
        raise InputError(None, "the training set is empty", "check the store's split and --slice-range")

    device = info.device
    try:  # before seeding: a framework's fixed networks (pGAN's VGG16) must not shift the generator's init
        framework = build_framework(config, model_config, metadata, device, info.rank)
    except ValueError as exc:
        raise InputError("--framework", str(exc)) from None
    metadata = {**metadata, **framework.checkpoint_metadata()}
    torch.manual_seed(config.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    generator = build_model(model_config).to(device)
    disc = framework.discriminator(model_config)
    disc = disc.to(device) if disc is not None else None
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.adam_betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=config.adam_betas) if disc is not None else None
    amp_dtype = autocast_dtype(device.type) if config.amp else None
    use_amp = amp_dtype is not None
    # float16 needs loss scaling; bfloat16 keeps float32's exponent range and needs none.
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    start, best, best_record = 0, None, None
    if state is not None:
        generator.load_state_dict(state["generator"])
        opt_g.load_state_dict(state["opt_g"])
        if disc is not None and opt_d is not None:
            disc.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["opt_d"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], device)
        start, best, best_record = int(state["iteration"]), state.get("best_value"), state.get("best")
        if start > config.iters:
            raise InputError(resume_path, f"the run is already at iteration {start}", f"pass --iters above {start}")

    g_train: nn.Module = generator
    d_train: nn.Module | None = disc
    if info.distributed:
        ddp_kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
        g_train = nn.parallel.DistributedDataParallel(generator, **ddp_kw)
        d_train = nn.parallel.DistributedDataParallel(disc, **ddp_kw) if disc is not None else None

    sampler = ShardedBatchSampler(len(train_set), config.batch_size, config.iters, config.seed,
                                  info.rank, info.world_size, start)
    first_batch = [index for index, _ in sampler.batch_at(start)] if start < config.iters else []
    loader = DataLoader(
        AugmentedPairs(train_set, config.seed, config.crop, config.flip, config.shift_px, config.gamma, config.scale,
                       config.rotate, config.bias),
        batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
    )

    logger: RunLogger | None = None
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        logger = RunLogger(run_dir, resume_iteration=start)
        _write_json(run_dir / RUN_FILE, {
            "model": model_config.to_dict(), "train": config.to_dict(), "world_size": info.world_size,
            "device": str(device), "train_samples": len(train_set), "val_samples": len(val_set) if val_set else 0,
            "metadata": metadata, "started_at_iteration": start,
        })

    def checkpoint_metadata(iteration: int, val: dict[str, Any] | None) -> dict[str, Any]:
        training = {**metadata.get("training", {}), "framework": config.framework, "iterations": iteration,
                    "recipe": config.to_dict(), "world_size": info.world_size}
        if val is not None:
            training["val"] = val
        return {**metadata, "model": model_config.to_dict(), "training": training}

    def save_resume(iteration: int) -> None:
        save_state(resume_path, {
            "iteration": iteration, "model_config": model_config.to_dict(), "train_config": config.to_dict(),
            "generator": generator.state_dict(), "opt_g": opt_g.state_dict(),
            "discriminator": disc.state_dict() if disc is not None else {},
            "opt_d": opt_d.state_dict() if opt_d is not None else {},
            "scaler": scaler.state_dict(), "rng": _rng_state(device),
            "best_value": best, "best": best_record,
        })
        save_checkpoint(run_dir / LAST_FILE, generator, checkpoint_metadata(iteration, None))
        emit({"event": "checkpoint", "iteration": iteration, "path": str(run_dir / LAST_FILE)})

    progress_ctx = _progress(console, config.iters, start) if info.is_main else nullcontext(None)
    losses: dict[str, float] = {}
    stop = _StopFlag()
    iteration = start
    t0 = time.perf_counter()
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if use_amp else nullcontext
    with stop.installed(), progress_ctx as progress:
        generator.train()
        for iteration, (x, y) in enumerate(loader, start=start):
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            lr = config.lr_at(iteration)
            for optimizer in (opt_g, opt_d):
                if optimizer is not None:
                    for group in optimizer.param_groups:
                        group["lr"] = lr
            batch = framework.prepare(x, y, iteration)
            with autocast():
                fake = framework.output(g_train(batch.x), batch).float()  # losses in float32 under --amp
            step_losses: dict[str, torch.Tensor] = {}
            fake_logits = None
            if disc is not None and d_train is not None and opt_d is not None:
                with autocast():
                    pairs = torch.cat((framework.judged(batch, fake.detach()), framework.judged(batch, batch.target)))
                    d_fake, d_real = d_train(pairs).float().chunk(2)
                loss_d = framework.d_loss(d_real, d_fake, batch)
                opt_d.zero_grad(set_to_none=True)
                scaler.scale(loss_d).backward()
                scaler.step(opt_d)
                step_losses["d"] = loss_d.detach()
                _set_requires_grad(disc, False)  # the generator step must not train (or all-reduce) D
                with autocast():
                    fake_logits = disc(framework.judged(batch, fake))
            parts = framework.g_loss(fake_logits, fake, batch)
            opt_g.zero_grad(set_to_none=True)
            scaler.scale(parts["total"]).backward()
            scaler.step(opt_g)
            scaler.update()
            if disc is not None:
                _set_requires_grad(disc, True)
            step_losses.update({k: v.detach() for k, v in parts.items()})
            done = iteration + 1
            losses = {k: float(v) for k, v in step_losses.items()}
            if not all(np.isfinite(v) for v in losses.values()):
                raise FloatingPointError(f"non-finite loss at iteration {done}: {losses}")
            if on_iteration is not None:
                on_iteration(done, losses)
            stopping = distributed.any_rank(stop.signal is not None, info)
            if info.is_main:
                assert logger is not None
                if done % config.log_every == 0 or done == config.iters:
                    logger.log(done, "train", {**losses, "lr": lr})
                    emit({"event": "log", "iteration": done, **losses, "lr": lr})
                if val_set is not None and (done % config.val_every == 0 or done == config.iters):
                    val = framework.validate(generator, val_set, config.val_batch_size, use_amp)
                    val_values = {k: v for k, v in val.items() if k != "n_slices"}
                    logger.log(done, "val", val_values)
                    improved = _is_better(config.select_metric, val.get(config.select_metric, float("nan")), best)
                    if improved:
                        best = float(val[config.select_metric])
                        best_record = {"iteration": done, **val}
                        save_checkpoint(run_dir / BEST_FILE, generator, checkpoint_metadata(done, val))
                    emit({"event": "val", "iteration": done, **val, "best": improved})
                if done % config.save_every == 0 or done == config.iters or stopping:
                    save_resume(done)
                if progress is not None:
                    shown = {k: v for k, v in losses.items() if k != "total" or "adv" in losses}  # l1: total == l1
                    progress.update(progress.task_ids[0], completed=done,
                                    loss=" ".join(f"{k} {v:.4f}" for k, v in shown.items()))
            distributed.barrier(info)
            if stopping:
                iteration = done
                break
            iteration = done
    wall = time.perf_counter() - t0
    batches = [list(map(int, b)) for b in distributed.gather_objects(first_batch, info)]  # type: ignore[arg-type]
    interrupted = stop.signal is not None and iteration < config.iters
    if info.is_main:
        assert logger is not None
        logger.close()
        record = json.loads((run_dir / RUN_FILE).read_text())
        record.update({"finished_at_iteration": iteration, "interrupted": interrupted, "best": best_record,
                       "last_losses": losses, "wall_s": round(wall, 2), "first_batch_by_rank": batches})
        _write_json(run_dir / RUN_FILE, record)
    return TrainResult(run_dir=run_dir, iteration=iteration, interrupted=interrupted, losses=losses,
                       best=best_record, wall_s=wall, first_batches=batches,
                       stop_signal=stop.signal if interrupted else None)


@contextmanager
def _progress(console: Any, total: int, start: int) -> Iterator[Any]:
    """A rich bar on stderr: iteration, losses, it/s and ETA (nothing when there is no console or it is quiet)."""
    if console is None or getattr(console, "quiet", False):
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from mrsynth.progress import progress_bar

    class _Rate(TextColumn):
        def render(self, task: Any) -> Any:  # rich's own speed column is per-second only when fast
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} it/s" if speed else "-- it/s")

    with progress_bar(
        console, TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
        _Rate(""), TimeRemainingColumn(), transient=False,
    ) as progress:
        progress.add_task("train", total=total, completed=start, loss="")
        yield progress
