"""``mrsynth train``: pix2pix or L1 training of AGI-Net / ResUnet on a slice store, one CPU to many GPUs.

A thin layer over :func:`mrsynth.training.train`; ``torchrun --nproc_per_node K -m mrsynth train ...`` runs it
under DistributedDataParallel (NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mrsynth.cli.common import emit_json, print_error, stderr_console, user_errors
from mrsynth.errors import InputError


@user_errors
def train_command(
    data: Path = typer.Option(..., "--data", help="Slice store made by mrsynth preprocess."),
    scenario: str = typer.Option(..., "--scenario", help="Inputs in channel order, then the target: t1,t2->flair."),
    arch: str = typer.Option("agi-net", "--arch", help="agi-net or resunet."),
    preset: str = typer.Option("paper", "--preset", help="Width preset: paper (64..512), light (32..256), tiny (16..128)."),
    widths: Optional[str] = typer.Option(None, "--widths", help="Custom stage widths, e.g. 24,48,96,192 (overrides --preset)."),
    groups: int = typer.Option(8, "--groups", "-n", help="CAGR groups n."),
    stages: Optional[str] = typer.Option(None, "--stages", help="Stages carrying CAGR (default down1,down2,down3,body,up1)."),
    no_attention: bool = typer.Option(False, "--no-attention", help="GR-only ablation (no Cross Group Attention)."),
    no_rolling: bool = typer.Option(False, "--no-rolling", help="CA-only ablation (no Group-wise Rolling)."),
    framework: str = typer.Option("pix2pix", "--framework", help="pix2pix (L1 + PatchGAN) or l1 (generator only)."),
    iters: int = typer.Option(120_000, "--iters", help="Training iterations (the paper: 120k)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Slices per iteration and process."),
    lr: float = typer.Option(1e-4, "--lr", help="Adam learning rate."),
    lr_schedule: str = typer.Option("constant", "--lr-schedule", help="constant, cosine, or linear (pix2pix: decay over the 2nd half)."),
    lambda_l1: float = typer.Option(100.0, "--lambda-l1", help="Weight of L1 against the adversarial loss (pix2pix)."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision (float16 autocast + grad scaling) on GPU."),
    run_dir: Path = typer.Option(Path("runs/train"), "--run-dir", help="Checkpoints, resume state, log.csv, TensorBoard."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir exactly where it stopped."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    val_every: int = typer.Option(1000, "--val-every", help="Validate every N iterations (best checkpoint kept)."),
    save_every: int = typer.Option(1000, "--save-every", help="Write the resume state and last checkpoint every N iterations."),
    log_every: int = typer.Option(10, "--log-every", help="Log losses every N iterations."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation, sample order and augmentation."),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's choice)."),
    crop: Optional[int] = typer.Option(None, "--crop", help="Random square crops of this size inside the brain (cheap CPU training)."),
    no_flip: bool = typer.Option(False, "--no-flip", help="Disable random left-right flips."),
    shift_aug: float = typer.Option(0.0, "--shift-aug", help="Misalignment augmentation: shift one random input by up to PX px."),
    gamma_aug: float = typer.Option(0.0, "--gamma-aug", help="Intensity augmentation: each input ** gamma, |log gamma| <= G (0.3 = TorchIO's default)."),
    scale_aug: Optional[str] = typer.Option(None, "--scale-aug", metavar="LOW,HIGH", help="Zoom augmentation: scale each slice in-plane by a factor drawn from LOW,HIGH (e.g. 0.3,1.2); uncovered field of view takes the background level."),
    slice_range: Optional[str] = typer.Option(None, "--slice-range", help="Train only on axial indices A:B[,C:D] (e.g. 0:45)."),
    val_split: str = typer.Option("val", "--val-split", help="Store split used for validation."),
    val_slice_range: Optional[str] = typer.Option(None, "--val-slice-range", help="Validate only on axial indices A:B[,C:D]."),
    min_brain: float = typer.Option(0.01, "--min-brain", help="Skip slices whose brain covers less than this fraction."),
    select_metric: str = typer.Option("psnr", "--select-metric", help="Validation metric that picks best.safetensors."),
    data_note: Optional[str] = typer.Option(None, "--data-note", help="Training-data description stored in the checkpoint."),
    licence: Optional[str] = typer.Option(None, "--licence", help="Licence of the training data, stored in the checkpoint."),
    skull_stripped: Optional[bool] = typer.Option(
        None, "--skull-stripped/--not-skull-stripped", help="Record whether the training scans are skull-stripped "
        "(default: what the store's manifest says)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per log/val/checkpoint event on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a generator; writes RUN_DIR/{last,best}.safetensors, resume.safetensors, log.csv, tensorboard/.

    Example: mrsynth train --data store/ --scenario t1,t2->flair --preset tiny --framework l1 --iters 2000 --crop 128 --device cpu

    Multi-GPU: torchrun --nproc_per_node 4 -m mrsynth train --data store/ --scenario t1,t2->flair --amp
    """
    import torch

    from mrsynth.hub.registry import parse_scenario
    from mrsynth.models import ModelConfig
    from mrsynth.models import preset as make_preset
    from mrsynth.training import TrainConfig, train
    from mrsynth.training.data import store_datasets, store_metadata

    try:
        inputs, target = parse_scenario(scenario)
    except ValueError as exc:
        raise InputError("--scenario", str(exc), "write e.g. t1,t2->flair") from None
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    options: dict[str, object] = {"arch": arch, "groups": groups, "in_channels": len(inputs),
                                  "attention": not no_attention, "rolling": not no_rolling}
    if stages:
        options["cagr_stages"] = tuple(s.strip() for s in stages.split(",") if s.strip())
    try:
        if widths:
            model_config = ModelConfig(widths=tuple(int(w) for w in widths.split(",")), **options)  # type: ignore[arg-type]
        else:
            model_config = make_preset(preset, **options)
        config = TrainConfig(
            framework=framework, iters=iters, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
            lambda_l1=lambda_l1, seed=seed, crop=crop, flip=not no_flip, shift_px=shift_aug, gamma=gamma_aug,
            scale=_scale_range(scale_aug), amp=amp,
            val_every=val_every, save_every=save_every, log_every=log_every, select_metric=select_metric,
        )
    except ValueError as exc:
        raise InputError("options", str(exc)) from None

    store, train_set, val_set = store_datasets(str(data), inputs, target, slice_range, val_split, val_slice_range, min_brain)
    metadata = store_metadata(store, inputs, target, slice_range)
    if data_note:
        metadata["training"]["data"] = data_note
    if licence:
        metadata["training"]["licence"] = licence
    if skull_stripped is not None:
        metadata["skull_stripped"] = skull_stripped
    console = stderr_console(quiet or as_json)
    if amp and not device.startswith("cuda") and not torch.cuda.is_available():
        stderr_console(quiet).print("note: --amp needs a CUDA device; training in float32")
    result = train(model_config, train_set, val_set, run_dir, config, metadata, device=device, resume=resume,
                   workers=workers, console=console, on_event=emit_json if as_json else None)
    if not _is_main_rank():  # rank 0 reports for the whole run
        return
    summary = {"event": "done", "run_dir": str(result.run_dir), "iteration": result.iteration,
               "interrupted": result.interrupted, "best": result.best, "losses": result.losses,
               "wall_s": round(result.wall_s, 2)}
    if as_json:
        emit_json(summary)
    else:
        best = result.best
        line = f"trained to iteration {result.iteration} in {result.wall_s:.0f} s -> {result.run_dir}"
        if best:
            line += f" (best val at {best['iteration']}: {best.get('psnr', float('nan')):.2f} dB, {best.get('ssim', float('nan')):.2f} %)"
        stderr_console(quiet).print(line)
    if result.interrupted:
        print_error(f"{run_dir}: interrupted at iteration {result.iteration}, resume state saved "
                    "(re-run the same command with --resume)")
        raise typer.Exit(130)


def _is_main_rank() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _scale_range(text: str | None) -> tuple[float, float] | None:
    """``LOW,HIGH`` -> (low, high); the bounds are checked by TrainConfig."""
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise InputError("--scale-aug", f"expected LOW,HIGH (e.g. 0.3,1.2), got {text!r}") from None
    return low, high
