"""``mrsynth train``: AGI-Net / ResUnet (or Table 4's variants) trained with pix2pix, L1, pGAN, mmGAN or
MedSynth on a slice store, one CPU to many GPUs.

A thin layer over :func:`mrsynth.training.train`; ``torchrun --nproc_per_node K -m mrsynth train ...`` runs it
under DistributedDataParallel (NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from mrsynth.cli.common import (emit_json, print_error, print_warning, signal_exit_code, signal_word, stderr_console,
                                user_errors)
from mrsynth.errors import InputError

if TYPE_CHECKING:
    from mrsynth.models import ModelConfig
    from mrsynth.training import TrainConfig

# Options that set the recipe or the architecture stored in a run's resume state: (section, field) there. Given
# with --resume they must agree with the run; left out, the run's own values apply.
RECIPE_OPTIONS: dict[str, tuple[str, str]] = {
    "arch": ("model", "arch"), "preset": ("model", "widths"), "widths": ("model", "widths"),
    "groups": ("model", "groups"), "stages": ("model", "cagr_stages"), "no_attention": ("model", "attention"),
    "no_rolling": ("model", "rolling"), "framework": ("train", "framework"), "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"), "lr_schedule": ("train", "lr_schedule"), "lambda_l1": ("train", "lambda_l1"),
    "lambda_ssim": ("train", "lambda_ssim"),
    "seed": ("train", "seed"), "crop": ("train", "crop"), "no_flip": ("train", "flip"),
    "shift_aug": ("train", "shift_px"), "gamma_aug": ("train", "gamma"),
    "bias_aug": ("train", "bias"), "scale_aug": ("train", "scale"),
    "rotate_aug": ("train", "rotate"), "target_median": ("train", "target_median"),
    "amp": ("train", "amp"), "val_every": ("train", "val_every"), "save_every": ("train", "save_every"),
    "log_every": ("train", "log_every"), "select_metric": ("train", "select_metric"),
    "lambda_perc": ("train", "lambda_perc"), "vgg_layer": ("train", "vgg_layer"),
    "max_missing": ("train", "max_missing"),
}
# Options that only one framework reads: given with another, they are refused rather than silently ignored.
FRAMEWORK_OPTIONS: dict[str, tuple[str, ...]] = {
    "lambda_perc": ("pgan",), "vgg_layer": ("pgan",), "vgg_weights": ("pgan",), "max_missing": ("mmgan",),
    "lambda_ssim": ("l1", "pix2pix")}
FLAG_OPTIONS = frozenset({"no_attention", "no_rolling", "no_flip", "amp", "target_median"})
CPU_RECIPE_FLAGS = "--preset tiny --crop 128 --batch-size 8 --framework l1"


@user_errors
def train_command(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help="Slice store made by mrsynth preprocess."),
    scenario: str = typer.Option(..., "--scenario", help="Inputs in channel order, then the target: t1,t2->flair."),
    arch: str = typer.Option("agi-net", "--arch", help="agi-net, resunet, deform-resunet (DCNv2) or arc-resunet "
                             "(ARC)."),
    preset: str = typer.Option("paper", "--preset", help="Width preset: paper (64..512), light (32..256), tiny (16..128)."),
    widths: Optional[str] = typer.Option(None, "--widths", help="Custom stage widths, e.g. 24,48,96,192 (overrides --preset)."),
    groups: int = typer.Option(8, "--groups", "-n", help="n: CAGR groups (agi-net) or ARC kernels (arc-resunet)."),
    stages: Optional[str] = typer.Option(None, "--stages", help="Stages whose first convs are replaced (default down1,down2,down3,body,up1)."),
    no_attention: bool = typer.Option(False, "--no-attention", help="GR-only ablation (no Cross Group Attention)."),
    no_rolling: bool = typer.Option(False, "--no-rolling", help="CA-only ablation (no Group-wise Rolling)."),
    framework: str = typer.Option("pix2pix", "--framework", help="pix2pix (L1 + PatchGAN), l1 (generator only), pgan "
                                  "(pix2pix + VGG16 perceptual loss), mmgan (any missing contrasts of a set; scenario "
                                  "t1,t1c,t2,flair->any) or medsynth (adversarial + L2 + gradient difference loss)."),
    lambda_perc: float = typer.Option(100.0, "--lambda-perc", help="pgan: weight of the perceptual loss."),
    vgg_layer: str = typer.Option("relu1_2", "--vgg-layer", help="pgan: VGG16 feature maps the perceptual loss "
                                  "compares (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3)."),
    vgg_weights: Optional[Path] = typer.Option(None, "--vgg-weights", metavar="PATH", help="pgan: VGG16 ImageNet "
                                               "weights, safetensors or torchvision's .pth state dict (default: "
                                               "torchvision's cache, else its download)."),
    max_missing: Optional[int] = typer.Option(None, "--max-missing", help="mmgan: most contrasts missing at once "
                                              "(default: all but one; 1 = any one missing)."),
    iters: int = typer.Option(120_000, "--iters", help="Training iterations (the paper: 120k; with --resume: the "
                              "run's own unless given)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Slices per iteration and process."),
    lr: float = typer.Option(1e-4, "--lr", help="Adam learning rate."),
    lr_schedule: str = typer.Option("constant", "--lr-schedule", help="constant, cosine, or linear (pix2pix: decay over the 2nd half)."),
    lambda_l1: float = typer.Option(100.0, "--lambda-l1", help="Weight of L1 against the adversarial loss (pix2pix)."),
    lambda_ssim: float = typer.Option(0.0, "--lambda-ssim", help="l1, pix2pix: add this weight times (1 - SSIM) "
                                      "to the loss (SSIM as the metrics define it; 0 = off)."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision: float16 autocast + grad scaling on GPU; bfloat16 autocast on CPUs with AVX512-BF16 or AMX (float32 on other CPUs, where emulated bfloat16 is slower). CPU validation stays float32."),
    run_dir: Path = typer.Option(Path("runs/train"), "--run-dir", help="Checkpoints, resume state, log.csv, TensorBoard."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir exactly where it stopped "
                                "(recipe options left out are the run's own; those given must match it)."),
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
    bias_aug: float = typer.Option(0.0, "--bias-aug", metavar="C", help="Bias-field augmentation: each input times "
                                   "exp(cubic polynomial), coefficients |c| <= C (0.5 = TorchIO's default)."),
    scale_aug: Optional[str] = typer.Option(None, "--scale-aug", metavar="LOW,HIGH", help="Zoom augmentation: scale each slice in-plane by a factor drawn from LOW,HIGH (e.g. 0.3,1.2); uncovered field of view takes the background level."),
    rotate_aug: Optional[str] = typer.Option(None, "--rotate-aug", metavar="DEG", help="Rotation augmentation: rotate each slice in-plane by an angle drawn from [-DEG, DEG] degrees (0 to 180), in one resampling with --scale-aug; uncovered field of view takes the background level."),
    target_median: bool = typer.Option(False, "--target-median", help="Scale every training subject's target to the "
                                       "subjects' mean median and standardise the outputs to it (validation, eval, "
                                       "synthesize): the model is not asked to guess each subject's brightness."),
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or warnings on stderr (--json still "
                               "emits warning events)."),
) -> None:
    """Train a generator; writes RUN_DIR/{last,best}.safetensors, resume.safetensors, log.csv, tensorboard/.

    Example: mrsynth train --data store/ --scenario t1,t2->flair --preset tiny --framework l1 --iters 2000 --crop 128 --device cpu

    Multi-GPU: torchrun --nproc_per_node 4 -m mrsynth train --data store/ --scenario t1,t2->flair --amp
    """
    import torch

    from mrsynth.devices import autocast_dtype, resolve_device
    from mrsynth.imputation import ANY_TARGET
    from mrsynth.models import ModelConfig
    from mrsynth.models import preset as make_preset
    from mrsynth.training import TrainConfig, train
    from mrsynth.training.data import store_datasets, store_metadata

    inputs, target = _training_scenario(scenario)
    imputing = target == ANY_TARGET
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    options: dict[str, object] = {"arch": arch, "groups": groups, "in_channels": len(inputs),
                                  "out_channels": len(inputs) if imputing else 1,
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
            lambda_l1=lambda_l1, lambda_ssim=lambda_ssim, seed=seed, crop=crop, flip=not no_flip, shift_px=shift_aug,
            gamma=gamma_aug, bias=bias_aug,
            scale=_scale_range(scale_aug), rotate=_rotation(rotate_aug), target_median=target_median, amp=amp,
            val_every=val_every, save_every=save_every, log_every=log_every, select_metric=select_metric,
            lambda_perc=lambda_perc, vgg_layer=vgg_layer, vgg_weights=str(vgg_weights) if vgg_weights else None,
            max_missing=max_missing,
        )
    except ValueError as exc:
        raise InputError("options", str(exc)) from None

    if resume:
        model_config, config = _resumed_configs(ctx, run_dir, model_config, config, inputs, target)
    _check_framework_options(ctx, config, inputs, imputing)

    # mmgan: the store yields the whole contrast set, the last contrast as y (the framework joins them again)
    data_inputs, data_target = (inputs[:-1], inputs[-1]) if imputing else (inputs, target)
    store, train_set, val_set = store_datasets(str(data), data_inputs, data_target, slice_range, val_split,
                                               val_slice_range, min_brain, config.target_median)
    metadata = store_metadata(store, inputs, target, slice_range, config.target_median)
    if data_note:
        metadata["training"]["data"] = data_note
    if licence:
        metadata["training"]["licence"] = licence
    if skull_stripped is not None:
        metadata["skull_stripped"] = skull_stripped
    if _is_main_rank():
        if val_set is None:
            _warn(_no_validation_warning(store, data, val_split), quiet, as_json)
        on_cpu = resolve_device(device) == "cpu"
        heavy = _cpu_cost_warning(model_config, config, tuple(store.slice_size)) if on_cpu else None
        if heavy:
            _warn(heavy, quiet, as_json)
        if config.amp and on_cpu and autocast_dtype("cpu") is None:
            _warn("--amp: this CPU has no native bfloat16 (AVX512-BF16 or AMX) and emulating it is slower than "
                  "float32; training in float32", quiet, as_json)
    console = stderr_console(quiet or as_json)
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
        stopped_by = result.stop_signal or signal.SIGINT
        print_error(f"{run_dir}: {signal_word(stopped_by)} at iteration {result.iteration}, resume state saved "
                    "(re-run the same command with --resume)")
        raise typer.Exit(signal_exit_code(stopped_by))


def _warn(message: str, quiet: bool, as_json: bool) -> None:
    """One ``warning:`` line on stderr (unless --quiet); with --json also a ``warning`` event among the others, so a
    pipeline reading stdout learns it too."""
    if not quiet:
        print_warning(message)
    if as_json:
        emit_json({"event": "warning", "message": message})


def _no_validation_warning(store: Any, data: Path, val_split: str) -> str:
    """Without validation no checkpoint is ever selected: say so before hours of training, not after."""
    from mrsynth.training.trainer import BEST_FILE, LAST_FILE

    missing = (f"no '{val_split}' subjects" if not store.subjects(val_split)
               else f"no '{val_split}' slices left after --val-slice-range and --min-brain")
    return (f"store {data} has {missing}: no validation, {BEST_FILE} will not be written; the last checkpoint is "
            f"{LAST_FILE}")


def _cpu_cost_warning(model_config: ModelConfig, config: TrainConfig, slice_size: tuple[int, int]) -> str | None:
    """The estimated cost of an iteration when it is too heavy for a CPU run, next to that of a recipe that is not
    (the defaults are the paper's GPU recipe; on a CPU they silently take minutes and many GiB per iteration)."""
    from mrsynth.models import preset as make_preset
    from mrsynth.training.cost import GIB, estimate_iteration, physical_memory_bytes

    cost = estimate_iteration(model_config, config, slice_size)
    if not cost.heavy:
        return None
    cpu_model = make_preset("tiny", arch=model_config.arch, in_channels=model_config.in_channels,
                            out_channels=model_config.out_channels)
    cpu_cost = estimate_iteration(cpu_model, replace(config, crop=128, batch_size=8, framework="l1"), slice_size)
    height, width = (config.crop, config.crop) if config.crop else slice_size
    shape = f"{height}x{width} {'crops' if config.crop else 'slices'}"
    ram = physical_memory_bytes()
    machine = f"; this machine has {ram / GIB:.0f} GiB" if ram else ""
    return (f"training on CPU needs about {cost.describe()} ({model_config.arch} {_widths_name(model_config.widths)}, "
            f"{config.framework}, batch {config.batch_size}, {shape}{machine}); for a CPU run try {CPU_RECIPE_FLAGS} "
            f"({cpu_cost.describe()})")


def _widths_name(widths: Any) -> str:
    """A width preset's name (``paper``), or the widths themselves when they are no preset."""
    from mrsynth.models.config import WIDTH_PRESETS

    names = [name for name, preset_widths in WIDTH_PRESETS.items() if tuple(preset_widths) == tuple(widths)]
    return names[0] if names else "widths " + ",".join(str(w) for w in widths)


def _resumed_configs(ctx: typer.Context, run_dir: Path, model_config: ModelConfig, config: TrainConfig,
                     inputs: list[str], target: str) -> tuple[ModelConfig, TrainConfig]:
    """The run's own architecture and recipe, with ``--iters`` if given; an error naming every recipe option that
    was given and disagrees with the run (the trainer would otherwise keep the run's value without a word)."""
    from mrsynth.models import ModelConfig
    from mrsynth.training import TrainConfig
    from mrsynth.training.state import read_state_fields
    from mrsynth.training.trainer import RESUME_FILE

    fields = read_state_fields(run_dir / RESUME_FILE, ("model_config", "train_config"))
    stored_model = ModelConfig.from_dict(fields["model_config"])
    stored_train = TrainConfig.from_dict(fields["train_config"])
    explicit = _explicit_options(ctx)
    differences = _recipe_differences(
        ctx, explicit, {"model": model_config.to_dict(), "train": config.to_dict()},
        {"model": stored_model.to_dict(), "train": stored_train.to_dict()})
    stored_scenario = _run_scenario(run_dir)
    if stored_scenario is not None and stored_scenario != (inputs, target):
        differences.insert(0, (f"--scenario {ctx.params['scenario']}", _scenario_text(*stored_scenario)))
    if differences:
        given = ", ".join(option for option, _ in differences)
        recorded = ", ".join(value for _, value in differences)
        verb, pronoun = ("differs", "it") if len(differences) == 1 else ("differ", "them")
        raise InputError(run_dir, f"{given} {verb} from the run being resumed ({recorded})",
                         f"drop {pronoun} or start a new --run-dir")
    vgg_weights = config.vgg_weights if "vgg_weights" in explicit else stored_train.vgg_weights  # a file may move
    return stored_model, replace(stored_train, iters=config.iters if "iters" in explicit else stored_train.iters,
                                 vgg_weights=vgg_weights)


def _explicit_options(ctx: typer.Context) -> set[str]:
    """Parameters given on the command line (or through the environment), as opposed to left at their default."""
    explicit = set()
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            explicit.add(name)
    return explicit


def _recipe_differences(ctx: typer.Context, explicit: set[str], requested: dict[str, dict[str, Any]],
                        stored: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(option as given, the run's value in that option's terms) for each explicit recipe option the run lacks."""
    differences = []
    for name, (section, key) in RECIPE_OPTIONS.items():
        if name not in explicit or (name == "preset" and "widths" in explicit):  # --widths overrides --preset
            continue
        if requested[section][key] == stored[section][key]:
            continue
        option = _option_text(ctx, name)
        if name in FLAG_OPTIONS:
            differences.append((option, f"without {option}"))
        elif name == "preset":
            differences.append((f"{option} {ctx.params[name]}", _widths_name(stored[section][key])))
        else:
            differences.append((f"{option} {ctx.params[name]}", _value_text(stored[section][key])))
    return differences


def _option_text(ctx: typer.Context, name: str) -> str:
    """The long form of an option as the user types it (``--batch-size`` for ``batch_size``)."""
    param = next(p for p in ctx.command.params if p.name == name)
    return next((opt for opt in param.opts if opt.startswith("--")), param.opts[0])


def _value_text(value: Any) -> str:
    """A stored recipe value as it would be typed (``0.5,1.1`` for a scale range, ``none`` for no crop)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def _run_scenario(run_dir: Path) -> tuple[list[str], str] | None:
    """(inputs, target) that the run in ``run_dir`` trains, from its run.json (None when that says nothing)."""
    from mrsynth.training.trainer import RUN_FILE

    try:
        scenario = json.loads((run_dir / RUN_FILE).read_text())["metadata"]["scenario"]
        return list(scenario["inputs"]), str(scenario["target"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _scenario_text(inputs: list[str], target: str) -> str:
    """A scenario as --scenario takes it."""
    return f"{','.join(inputs)}->{target}"


def _training_scenario(text: str) -> tuple[list[str], str]:
    """``t1,t2->flair`` -> (["t1", "t2"], "flair"); ``t1,t1c,t2,flair->any`` (mmgan: one model for any missing
    contrast of the set) -> (["t1", "t1c", "t2", "flair"], "any")."""
    from mrsynth.hub.registry import parse_scenario
    from mrsynth.imputation import ANY_TARGET

    head, _, tail = text.replace(" ", "").partition("->")
    contrasts = [c for c in head.split(",") if c]
    try:
        if tail == ANY_TARGET and len(contrasts) >= 2:
            inputs, last = parse_scenario(f"{','.join(contrasts[:-1])}->{contrasts[-1]}")
            return [*inputs, last], ANY_TARGET
        return parse_scenario(text)
    except ValueError as exc:
        raise InputError("--scenario", str(exc), "write e.g. t1,t2->flair, or t1,t1c,t2,flair->any for mmgan") from None


def _check_framework_options(ctx: typer.Context, config: TrainConfig, inputs: list[str], imputing: bool) -> None:
    """An mmgan run needs a ``->any`` scenario and no other framework takes one; options of another framework and
    input augmentations that would bend only some contrasts of an mmgan set are refused, not ignored."""
    explicit = _explicit_options(ctx)
    if imputing != (config.framework == "mmgan"):
        raise InputError("--scenario", "only --framework mmgan trains one model for any missing contrast (->any)"
                         if imputing else "mmgan trains one model for any missing contrast of a set",
                         "add --framework mmgan" if imputing else "write the set, e.g. t1,t1c,t2,flair->any")
    for name, owners in FRAMEWORK_OPTIONS.items():
        if name in explicit and config.framework not in owners:
            raise InputError(_option_text(ctx, name), f"is an option of --framework {' or '.join(owners)}, not "
                             f"{config.framework}", "drop it or change --framework")
    if imputing:
        for name in ("shift_aug", "gamma_aug", "bias_aug", "target_median"):
            if name in explicit and ctx.params[name]:
                raise InputError(_option_text(ctx, name), "is not supported with --framework mmgan (it would bend "
                                 "only some contrasts of the set)", "drop it")
        if config.max_missing is not None and config.max_missing > len(inputs) - 1:
            raise InputError("--max-missing", f"{config.max_missing} of {len(inputs)} contrasts would leave none "
                             "present", f"use 1 to {len(inputs) - 1}")


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


def _rotation(text: str | None) -> float:
    """``DEG`` -> the rotation bound in degrees, 0 (off) when not given; a string option, so that a non-number gets
    one error line naming the option like an out-of-range value does."""
    from mrsynth.training.config import check_rotation

    if text is None:
        return 0.0
    try:
        degrees = float(text)
    except ValueError:
        raise InputError("--rotate-aug", f"expected a number of degrees (e.g. 15), got {text!r}") from None
    try:
        check_rotation(degrees)
    except ValueError as exc:
        raise InputError("--rotate-aug", str(exc)) from None
    return degrees
