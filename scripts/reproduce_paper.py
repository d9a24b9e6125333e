"""Train and evaluate the runs behind the paper's Tables 3-7 and Fig. 3 on a user's slice store, and write each table.

Why a script and not a command: it is thin orchestration of the public CLI (``mrsynth train``, ``mrsynth eval``,
``mrsynth profile``), so every number it writes can be reproduced by hand from the commands it records. The CLI
is called in this process (no interpreter and torch start-up per run); the recorded commands are the equivalent
shell lines.

    python scripts/reproduce_paper.py --data STORE --out DIR --scale {smoke,cpu,paper} [--jobs N]

Scenario: (t1, t2)->pd when the store holds pd (the paper's IXI setting), else (t1, t2)->flair (BraTS).
Resuming: a run whose ``RUN/reproduced.json`` exists is not retrained; a run with a resume state but no marker
continues with ``mrsynth train --resume``; tables are always re-evaluated and rewritten (atomically).
``--jobs N`` (N > 1) trains the unfinished runs N at a time first, each as ``python -m mrsynth train`` in its own
process (scripts/parallel_training.py), then evaluates as above. pGAN rows are not run when no VGG16 weights are
at hand (no ``--vgg-weights``, none in torchvision's cache): a download must not stall or fail the script.
See docs/reproducing.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parallel_training import Job, JobFailed, Stopped, run_jobs

DONE_MARKER = "reproduced.json"
DEFAULT_STAGES = ("down1", "down2", "down3", "body", "up1")
ALL_STAGES = ("down1", "down2", "down3", "body", "up1", "up2", "up3")
METRICS = ("psnr", "ssim", "mae")
NO_VGG = "not run: no VGG16 weights (give --vgg-weights)"

# --- The paper's figures (agi-net.md), one place -------------------------------------------------------------
# Tables 3, 4 and 6 are images in the paper; agi-net.md keeps their captions but not their cells, so only what its
# text or other tables state is transcribed, with the source named. "" = not recoverable from agi-net.md.
# All rows: IXI, (T1, T2)->PD, pixel2pixel unless the row says otherwise; PSNR dB, SSIM %, MAE x100.
T5_N = "Table 5 (n from spec/cagr.md: the n cell is lost in agi-net.md)"
PAPER: dict[str, dict[str, dict[str, str]]] = {
    "table3": {
        "resunet": {"psnr": "34.38", "ssim": "96.34", "mae": "1.01",
                    "source": "Table 1, pixel2pixel (= Table 5 ResUnet)"},
        "gr": {"psnr": "34.85", "source": "Sec. 4.3 text: GR adds 0.47 dB to 34.38"},
        "ca": {"source": "cell not in agi-net.md"},
        "agi": {"psnr": "34.96", "ssim": "96.62", "mae": "0.97", "source": "Table 1, Ours (= Table 5, n = 8)"},
    },
    "table4": {  # evaluated with a 3-px translation of one input
        "resunet": {"source": "cell not in agi-net.md"},
        "deform": {"source": "cell not in agi-net.md"},
        "arc": {"source": "cell not in agi-net.md"},
        "agi": {"psnr_gain": "+1.49", "source": "Sec. 4.3 text: +1.49 dB PSNR over ResUnet"},
    },
    "table5": {
        "resunet": {"params_m": "17.04", "flops_g": "141.91", "psnr": "34.38", "ssim": "96.34", "source": "Table 5"},
        "n1": {"params_m": "33.58", "flops_g": "238.84", "psnr": "34.76", "ssim": "96.49", "source": T5_N},
        "n2": {"params_m": "25.31", "flops_g": "190.52", "psnr": "34.85", "ssim": "96.55", "source": T5_N},
        "n4": {"params_m": "21.19", "flops_g": "166.36", "psnr": "34.93", "ssim": "96.60", "source": T5_N},
        "n8": {"params_m": "19.15", "flops_g": "154.28", "psnr": "34.96", "ssim": "96.62", "source": "Table 5"},
        "n16": {"params_m": "18.18", "flops_g": "148.24", "psnr": "34.88", "ssim": "96.60", "source": "Table 5"},
    },
    "table6": {
        "pix2pix/resunet": {"psnr": "34.38", "ssim": "96.34", "mae": "1.01", "source": "Table 1, pixel2pixel"},
        "pix2pix/agi": {"psnr": "34.96", "ssim": "96.62", "mae": "0.97", "source": "Table 1, Ours"},
        "pgan/resunet": {"source": "cell not in agi-net.md"},
        "pgan/agi": {"source": "cell not in agi-net.md"},
        "mmgan/resunet": {"source": "cell not in agi-net.md"},
        "mmgan/agi": {"source": "cell not in agi-net.md"},
        "medsynth/resunet": {"source": "cell not in agi-net.md"},
        "medsynth/agi": {"source": "cell not in agi-net.md"},
    },
    "table7": {  # row k: the first k of down1..up3 replaced (k = 0: ResUnet, 5: AGI-Net), as Sec. 4.3 reads them
        "0": {"params_m": "17.04", "flops_g": "141.91", "psnr": "34.38", "source": "Table 7"},
        "1": {"params_m": "17.06", "flops_g": "144.46", "psnr": "34.62", "source": "Table 7"},
        "2": {"params_m": "17.12", "flops_g": "146.95", "psnr": "34.73", "source": "Table 7"},
        "3": {"params_m": "17.47", "flops_g": "149.40", "psnr": "34.80", "source": "Table 7"},
        "4": {"params_m": "18.81", "flops_g": "151.83", "psnr": "34.93", "source": "Table 7"},
        "5": {"params_m": "19.15", "flops_g": "154.28", "psnr": "34.96", "source": "Table 7 (AGI-Net)"},
        "6": {"params_m": "19.24", "flops_g": "156.76", "psnr": "34.93", "source": "Table 7"},
        "7": {"params_m": "19.26", "flops_g": "159.31", "psnr": "34.92", "source": "Table 7"},
    },
    "fig3": {"source": {"source": "Fig. 3 is a plot; agi-net.md has no numbers (AGI-Net declines more gently)"}},
}


# --- Scales ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    """One training budget for every run, and how the tables' parameter and FLOP counts are profiled."""

    name: str
    train: tuple[str, ...]  # options given to every `mrsynth train`
    framework: str  # framework of Tables 3, 4, 5 and 7 (the paper: pixel2pixel)
    profile: tuple[str, ...]  # options given to every `mrsynth profile`
    eval: tuple[str, ...] = ()
    note: str = ""


SCALES = {
    "smoke": Scale(
        "smoke",
        ("--widths", "16,16,32,32", "--iters", "2", "--batch-size", "2", "--crop", "64", "--val-every", "2",
         "--save-every", "2", "--log-every", "1", "--device", "cpu", "--threads", "1"),
        "pix2pix", ("--preset", "tiny", "--size", "64"), ("--device", "cpu", "--batch-size", "8"),
        ("a test of the orchestration: 2 iterations per run, widths 16-32 (n = 16 needs 16 channels); "
         "the figures mean nothing")),
    "cpu": Scale(
        "cpu",
        ("--preset", "tiny", "--iters", "1500", "--batch-size", "8", "--crop", "96", "--val-every", "500",
         "--save-every", "250", "--log-every", "50", "--device", "cpu"),
        "l1", ("--preset", "paper", "--size", "256"), ("--device", "cpu"),
        "tiny preset (16-128), 1500 iterations of 8 crops of 96 px per run, L1 for Tables 3/4/5/7 and each "
        "framework's own losses for Table 6; see docs/reproducing.md for the hours"),
    "paper": Scale(
        "paper",
        ("--preset", "paper", "--iters", "120000", "--batch-size", "16", "--lr", "1e-4", "--val-every", "1000",
         "--save-every", "1000", "--device", "auto"),
        "pix2pix", ("--preset", "paper", "--size", "256"), ("--device", "auto"),
        "the paper's recipe (Sec. 4.1): widths 64-512, 120k iterations, batch 16, Adam lr 1e-4, full slices"),
}


# --- Runs ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One `mrsynth train` run; equal options give equal names, so tables share runs (ResUnet, AGI-Net)."""

    arch: str
    framework: str
    groups: int = 8
    stages: tuple[str, ...] = DEFAULT_STAGES
    attention: bool = True
    rolling: bool = True

    @property
    def name(self) -> str:
        parts = [self.framework, self.arch]
        if self.arch in ("agi-net", "arc-resunet"):
            parts.append(f"n{self.groups}")
        if self.arch == "agi-net" and self.stages != DEFAULT_STAGES:
            parts.append("stages-" + "-".join(self.stages) if self.stages else "stages-none")
        if not self.attention:
            parts.append("no-attention")
        if not self.rolling:
            parts.append("no-rolling")
        return "_".join(parts)

    def options(self) -> list[str]:
        """This run's own `mrsynth train` options (the scale's are added by the caller)."""
        opts = ["--arch", self.arch, "--framework", self.framework]
        if self.arch in ("agi-net", "arc-resunet"):
            opts += ["--groups", str(self.groups)]
        if self.arch == "agi-net" and self.stages != DEFAULT_STAGES:
            opts += ["--stages", ",".join(self.stages)]
        opts += ["--no-attention"] * (not self.attention) + ["--no-rolling"] * (not self.rolling)
        return opts

    def profile_options(self) -> list[str]:
        opts = ["--arch", self.arch, "--groups", str(self.groups)]
        if self.arch == "agi-net" and self.stages != DEFAULT_STAGES:
            opts += ["--stages", ",".join(self.stages)]
        return opts + ["--no-attention"] * (not self.attention) + ["--no-rolling"] * (not self.rolling)


@dataclass
class Row:
    """One table row: its label columns, its run, and the paper's figures for it."""

    labels: dict[str, str]
    run: Run
    paper_key: str
    baseline: Run | None = None  # Table 6 pairs each AGI-Net generator with the same framework's ResUnet


@dataclass
class Table:
    name: str
    title: str
    rows: list[Row]
    profile: bool = False  # Tables 5 and 7 add parameters and FLOPs
    shift: str | None = None  # evaluate under this --perturb-shift (Table 4: 3 px; Fig. 3: 0:3:0.5)
    notes: list[str] = field(default_factory=list)


def tables(base: str) -> list[Table]:
    """The paper's Tables 3-7 and Fig. 3 as runs; ``base`` is the framework of the non-framework tables."""
    resunet, agi = Run("resunet", base), Run("agi-net", base)
    return [
        Table("table3", "Table 3: Group-wise Rolling (GR) and Cross Group Attention (CA) ablation", [
            Row({"GR": "", "CA": ""}, resunet, "resunet"),
            Row({"GR": "x", "CA": ""}, Run("agi-net", base, attention=False), "gr"),
            Row({"GR": "", "CA": "x"}, Run("agi-net", base, rolling=False), "ca"),
            Row({"GR": "x", "CA": "x"}, agi, "agi"),
        ]),
        Table("table4", "Table 4: convolution types, evaluated with a 3-px translation of one input", [
            Row({"network": "ResUnet"}, resunet, "resunet"),
            Row({"network": "Deform-ResUnet"}, Run("deform-resunet", base), "deform"),
            Row({"network": "ARC-ResUnet"}, Run("arc-resunet", base), "arc"),
            Row({"network": "AGI-Net"}, agi, "agi"),
        ], shift="3:3:1", notes=["Our figures are at a 3-px shift of the last input (`--perturb-shift 3:3:1`)."]),
        Table("table5", "Table 5: number of groups n", [
            Row({"network": "ResUnet", "n": ""}, resunet, "resunet"),
            *[Row({"network": "AGI-Net", "n": str(n)}, Run("agi-net", base, groups=n), f"n{n}")
              for n in (1, 2, 4, 8, 16)],
        ], profile=True),
        Table("table6", "Table 6: ResUnet and AGI-Net as the generator of other frameworks", [
            Row({"method": f, "network": label}, Run(arch, f), f"{f}/{key}",
                baseline=Run("resunet", f) if arch == "agi-net" else None)
            for f in ("pix2pix", "pgan", "mmgan", "medsynth")
            for label, arch, key in (("ResUnet", "resunet", "resunet"), ("AGI-Net", "agi-net", "agi"))
        ], notes=[("mmgan is trained for any one of the scenario's contrasts missing and scored on the scenario's "
                   "target."),
                  ("psnr_gain_vs_resunet, p_psnr_vs_resunet: the AGI-Net generator against the ResUnet generator "
                   "of the same framework (mean per-slice PSNR difference, Wilcoxon signed-rank p), the "
                   "comparison the paper's Table 6 makes.")]),
        Table("table7", "Table 7: which stages are replaced by CAGR (n = 8)", [
            Row({"stages": "+".join(ALL_STAGES[:k]) or "none"},
                resunet if k == 0 else Run("agi-net", base, stages=ALL_STAGES[:k]), str(k)) for k in range(8)
        ], profile=True),
        Table("fig3", "Fig. 3: PSNR under a random translation of one input, 0-3 px", [
            Row({"network": "ResUnet"}, resunet, "source"), Row({"network": "AGI-Net"}, agi, "source"),
        ], shift="0:3:0.5"),
    ]


# --- Calling the CLI -------------------------------------------------------------------------------------------
class CommandFailed(Exception):
    def __init__(self, command: list[str], code: int) -> None:
        super().__init__(f"{shlex.join(['mrsynth', *command])} exited with {code}")
        self.code = code


def call_cli(command: list[str]) -> list[dict[str, Any]]:
    """Run ``mrsynth COMMAND`` in this process and return its ``--json`` lines (the CLI's one-line errors pass
    through to stderr unchanged)."""
    from mrsynth.cli.app import app

    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            result = app(command, prog_name="mrsynth", standalone_mode=False)
            code = result if isinstance(result, int) else 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    if code:
        raise CommandFailed(command, code)
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


@dataclass
class Reproduction:
    """Everything the tables share: the store, the scenario, the scale and the log of commands."""

    data: Path
    out: Path
    scale: Scale
    inputs: list[str]
    target: str
    split: str
    extra_train: list[str]
    log: Callable[[str], None]
    commands: list[str] = field(default_factory=list)  # all, each once, in order
    table_commands: list[str] = field(default_factory=list)  # those of the table being made
    trained: set[str] = field(default_factory=set)
    reused: set[str] = field(default_factory=set)
    not_run: dict[str, str] = field(default_factory=dict)  # framework -> why its rows are not run (the cells say it)

    @property
    def scenario(self) -> str:
        return f"{','.join(self.inputs)}->{self.target}"

    def record(self, command: list[str]) -> str:
        line = shlex.join(["mrsynth", *command])
        for log in (self.commands, self.table_commands):
            if line not in log:
                log.append(line)
        return line

    def run_dir(self, run: Run) -> Path:
        return self.out / "runs" / run.name

    def train_command(self, run: Run) -> list[str]:
        scenario = (f"{','.join([*self.inputs, self.target])}->any" if run.framework == "mmgan" else self.scenario)
        extra = ["--max-missing", "1"] if run.framework == "mmgan" else []
        pgan = self.extra_train if run.framework == "pgan" else []
        return ["train", "--data", str(self.data), "--scenario", scenario, *run.options(), *extra, *pgan,
                *self.scale.train, "--run-dir", str(self.run_dir(run)), "--json"]  # progress on stderr

    def finished(self, run: Run) -> bool:
        return (self.run_dir(run) / DONE_MARKER).exists()

    def resumable(self, run: Run) -> bool:
        from mrsynth.training.trainer import RESUME_FILE

        return (self.run_dir(run) / RESUME_FILE).exists()

    def mark_finished(self, run: Run, resumed: bool, seconds: float) -> None:
        """Write the marker, only after the run's `mrsynth train` exited 0 (an interrupted run has none)."""
        from mrsynth.io.atomic import atomic_output

        line = shlex.join(["mrsynth", *self.train_command(run)])
        with atomic_output(self.run_dir(run) / DONE_MARKER, overwrite=True) as tmp:
            tmp.write_text(json.dumps({"command": line, "resumed": resumed,
                                       "seconds_this_call": round(seconds, 1)}) + "\n")
        self.trained.add(run.name)

    def ensure_trained(self, run: Run) -> Path:
        """Train ``run`` unless its marker says it finished; continue an interrupted one with ``--resume``."""
        run_dir = self.run_dir(run)
        command = self.train_command(run)
        self.record(command)
        if self.finished(run):
            if run.name not in self.trained:
                self.reused.add(run.name)
            return run_dir / "best.safetensors"
        resume = self.resumable(run)
        self.log(f"{'resuming' if resume else 'training'} {run.name}")
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        call_cli(command + ["--resume"] * resume)
        self.mark_finished(run, resume, time.monotonic() - started)
        return run_dir / "best.safetensors"

    def subprocess_argv(self, run: Run, jobs: int) -> list[str]:
        """``python -m mrsynth train ...`` for one of ``jobs`` parallel runs: the options of the sequential path,
        ``--threads cores // jobs`` unless the scale sets it (a run's torch would take every core), ``--resume``
        for an interrupted run."""
        threads = [] if "--threads" in self.scale.train else ["--threads", str(max(1, (os.cpu_count() or 1) // jobs))]
        return [sys.executable, "-m", "mrsynth", *self.train_command(run), *threads,
                *["--resume"] * self.resumable(run)]

    def train_in_parallel(self, runs: list[Run], jobs: int) -> None:
        """Train the unfinished ``runs`` ``jobs`` at a time; the first failure stops the others (each saves its
        resume state) and raises :class:`CommandFailed` for it."""
        def job(run: Run) -> Job:
            resume = self.resumable(run)
            return Job(f"{'resuming' if resume else 'training'} {run.name}", self.subprocess_argv(run, jobs),
                       lambda seconds: self.mark_finished(run, resume, seconds))

        pending = [run for run in runs if not self.finished(run)]
        planned = [job(run) for run in pending]
        (self.out / "runs").mkdir(parents=True, exist_ok=True)
        try:
            run_jobs(planned, jobs, self.log)
        except JobFailed as exc:
            raise CommandFailed(self.train_command(pending[planned.index(exc.job)]), exc.code) from None

    def evaluate(self, checkpoints: list[Path], shift: str | None
                 ) -> tuple[dict[str, dict], dict[tuple[str, str], dict]]:
        """Score the checkpoints in one `mrsynth eval` call: summaries (or the shift curve) keyed by checkpoint
        path, and the PSNR paired tests keyed by (path a, path b) in both orders, ``mean_diff`` being b - a (an
        mmgan checkpoint is scored on this scenario's target)."""
        unique = list(dict.fromkeys(str(c) for c in checkpoints))
        command = ["eval", "--data", str(self.data), "--split", self.split, *[a for c in unique for a in ("-c", c)],
                   *self.scale.eval, "--quiet", "--json"]
        if shift:
            command += ["--perturb-shift", shift]
        self.record(command)
        records = call_cli(command)
        summaries = [r for r in records if r.get("kind") == "summary" and r.get("scenario") == self.scenario]
        by_label = {r["model"]: r["checkpoint"] for r in summaries}
        chosen = {r["checkpoint"]: r for r in summaries}
        curves: dict[str, dict] = {}
        for r in records:
            if r.get("kind") == "shift" and r.get("model") in by_label:
                curves.setdefault(by_label[r["model"]], {})[float(r["shift_px"])] = r
        tests: dict[tuple[str, str], dict] = {}
        for r in records:
            if r.get("kind") == "paired_test" and r.get("metric") == "psnr" and {r["a"], r["b"]} <= by_label.keys():
                a, b = by_label[r["a"]], by_label[r["b"]]
                tests[(a, b)] = r
                tests[(b, a)] = {**r, "mean_diff": -r["mean_diff"]}
        return {"main": chosen, "curves": curves}, tests

    def profile(self, run: Run) -> dict[str, Any]:
        command = ["profile", *run.profile_options(), "--in-channels", str(len(self.inputs)), *self.scale.profile,
                   "--json"]
        self.record(command)
        return call_cli(command)[-1]


# --- Writing ---------------------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table_rows(rep: Reproduction, table: Table) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, cells and the commands of one table (runs trained first, then one eval call); a row whose framework
    cannot run here (``rep.not_run``) is neither trained nor scored, and its metric cells say why."""
    rep.table_commands = []
    runnable = [row for row in table.rows if row.run.framework not in rep.not_run]
    trained = {row.run.name: rep.ensure_trained(row.run) for row in runnable}
    checkpoints = [trained.get(row.run.name, Path()) for row in table.rows]
    scores, tests = rep.evaluate(list(trained.values()), table.shift)
    paper = PAPER[table.name]
    labels = list(table.rows[0].labels)
    if table.name == "fig3":
        levels = sorted({lvl for curve in scores["curves"].values() for lvl in curve})
        header = [*labels, "run", *[f"psnr_{lvl:g}px" for lvl in levels], *[f"ssim_{lvl:g}px" for lvl in levels],
                  "paper"]
        cells = []
        for row, ckpt in zip(table.rows, checkpoints):
            curve = scores["curves"].get(str(ckpt), {})
            cells.append([*row.labels.values(), row.run.name,
                          *[fmt(curve.get(lvl, {}).get("psnr", {}).get("mean")) for lvl in levels],
                          *[fmt(curve.get(lvl, {}).get("ssim", {}).get("mean")) for lvl in levels],
                          paper["source"]["source"]])
        return header, cells, rep.table_commands
    metric_cols = ["psnr", "ssim", "mae"] if table.name not in ("table7",) else ["psnr", "ssim"]
    header = [*labels, "run"]
    if table.profile:
        header += ["params_m", "flops_g"]
    header += [*metric_cols, "n_slices", "p_psnr_vs_row1"]
    paired = any(row.baseline for row in table.rows)
    if paired:
        header += ["psnr_gain_vs_resunet", "p_psnr_vs_resunet"]
    paper_cols = ["params_m", "flops_g"] * table.profile + (["psnr", "ssim"] if table.name in ("table5",) else
                                                             ["psnr"] if table.name == "table7" else
                                                             ["psnr_gain"] if table.name == "table4" else
                                                             ["psnr", "ssim", "mae"])
    header += [f"paper_{c}" for c in paper_cols] + ["paper_source"]
    cells = []
    for row, ckpt in zip(table.rows, checkpoints):
        if table.shift:  # the curve also holds the unperturbed level 0: the table's figure is its largest shift
            curve = scores["curves"].get(str(ckpt), {})
            record = curve[max(curve)] if curve else {}
        else:
            record = scores["main"].get(str(ckpt), {})
        cell = [*row.labels.values(), row.run.name]
        if table.profile:
            prof = rep.profile(row.run)
            cell += [fmt(prof.get("params_m")), fmt(prof.get("gflops"))]
        if row.run.framework in rep.not_run:
            cell += [rep.not_run[row.run.framework]] * len(metric_cols) + ["", ""] + ["", ""] * paired
        else:
            cell += [fmt(record.get(m, {}).get("mean")) for m in metric_cols]
            row1_test = tests.get((str(checkpoints[0]), str(ckpt)), {})
            cell += [fmt(record.get("n_slices")), fmt(row1_test.get("p_value"), 3)]
            if paired:
                base = str(trained.get(row.baseline.name, "")) if row.baseline else ""
                test = tests.get((base, str(ckpt)), {})
                cell += [fmt(test.get("mean_diff")), fmt(test.get("p_value"), 3)]
        figures = paper.get(row.paper_key, {})
        cell += [figures.get(c, "") for c in paper_cols] + [figures.get("source", "")]
        cells.append(cell)
    return header, cells, rep.table_commands


def cpu_model() -> str:
    """The CPU's marketing name where Linux says it (``platform.processor()`` is empty there), else the ISA."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    import torch

    cpu = cpu_model()
    return (f"{platform.platform()}; CPU {cpu}, {os.cpu_count()} logical cores; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def write_table(rep: Reproduction, table: Table, header: list[str], cells: list[list[str]], commands: list[str],
                stamp: str) -> list[Path]:
    """``DIR/tables/NAME.md`` and ``NAME.csv``, each written whole or not at all."""
    from mrsynth.io.atomic import atomic_output

    folder = rep.out / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    md = [f"# {table.title}", "",
          f"- scale: `{rep.scale.name}` ({rep.scale.note})",
          f"- store: `{rep.data}`, scenario {rep.scenario}, evaluated on split `{rep.split}`",
          f"- date: {stamp}", f"- machine: {machine()}",
          ("- paper columns: the paper's figures (IXI, (T1, T2)->PD, pixel2pixel unless the method column says "
           "otherwise), transcribed from agi-net.md; empty where agi-net.md does not have the cell"),
          ("- PSNR dB, SSIM %, MAE x100, slice means; p_psnr_vs_row1: Wilcoxon signed-rank p of the per-slice PSNR "
           "difference to the first row (mrsynth eval's paired test, on the unshifted slices)"),
          *[f"- {note}" for note in table.notes], "",
          "| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
          *["| " + " | ".join(c or "–" for c in row) + " |" for row in cells], "",
          "Commands:", "", "```", *commands, "```", ""]
    written = []
    with atomic_output(folder / f"{table.name}.md", overwrite=True) as tmp:
        tmp.write_text("\n".join(md))
    written.append(folder / f"{table.name}.md")
    with atomic_output(folder / f"{table.name}.csv", overwrite=True) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(cells)
    written.append(folder / f"{table.name}.csv")
    return written


# --- Entry point -----------------------------------------------------------------------------------------------
def scenario_of(data: Path) -> tuple[list[str], str]:
    """(t1, t2)->pd for an IXI-like store (it holds pd), else (t1, t2)->flair (BraTS), from the manifest."""
    from mrsynth.data.store import SliceStore

    contrasts = set(SliceStore(data).contrasts)
    target = "pd" if "pd" in contrasts else "flair"
    missing = sorted({"t1", "t2", target} - contrasts)
    if missing:
        from mrsynth.errors import InputError

        raise InputError(data, f"the store has no {', '.join(missing)}",
                         "the paper's tables need t1, t2 and pd (IXI) or t1, t2 and flair (BraTS)")
    return ["t1", "t2"], target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="slice store made by mrsynth preprocess")
    parser.add_argument("--out", type=Path, required=True, help="folder for runs/ and tables/ (reused to resume)")
    parser.add_argument("--scale", choices=sorted(SCALES), required=True)
    parser.add_argument("--split", default="test", help="store split the tables are scored on (default: test)")
    parser.add_argument("--only", default=None,
                        help="comma-separated subset of table3,table4,table5,table6,table7,fig3 (default: all)")
    parser.add_argument("--vgg-weights", type=Path, default=None,
                        help="VGG16 weights for pGAN (mrsynth train's); without them and without torchvision's "
                             "cached file the pGAN rows are not run")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train N runs at a time, each in its own process with cores/N threads, before "
                             "evaluating (default: 1, one after another in this process)")
    return parser.parse_args(argv)


def missing_vgg_weights(vgg_weights: Path | None) -> str | None:
    """Why pGAN cannot run here, or None: no ``--vgg-weights`` and no file where torchvision caches VGG16 (the
    lookup mrsynth train makes before it would try a download, which this script must not depend on)."""
    if vgg_weights is not None:
        return None
    from mrsynth.training.vgg_weights import torchvision_cache_file

    cache = torchvision_cache_file()
    return None if cache.is_file() else f"no --vgg-weights and no VGG16 weights in torchvision's cache ({cache})"


def stopped(exc: KeyboardInterrupt) -> int:
    """The one error line and the shell's exit code (130 Ctrl-C, 143 SIGTERM) after --jobs training was stopped."""
    from mrsynth.cli.common import signal_exit_code, signal_word

    signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
    print(f"error: {signal_word(signum)}: the training runs in progress were stopped (those that had begun "
          "training saved a resume state); re-run the same command to continue", file=sys.stderr)
    return signal_exit_code(signum)


def main(argv: list[str] | None = None) -> int:
    from mrsynth.errors import InputError

    args = parse_args(argv)
    scale = SCALES[args.scale]
    chosen = tables(scale.framework)
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {t.name for t in chosen})
        if unknown:
            print(f"error: --only: unknown table {', '.join(unknown)}", file=sys.stderr)
            return 2
        chosen = [t for t in chosen if t.name in wanted]
    try:
        from mrsynth.data.store import SliceStore

        inputs, target = scenario_of(args.data)
        if not SliceStore(args.data).subjects(args.split):
            raise InputError(args.data, f"no subject in split {args.split!r}", "choose another --split")
        if args.vgg_weights is not None and not args.vgg_weights.is_file():
            raise InputError("--vgg-weights", f"{args.vgg_weights} is not a file")
        if args.jobs < 1:
            raise InputError("--jobs", f"{args.jobs} is not a number of runs at a time", "give 1 or more")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    extra = ["--vgg-weights", str(args.vgg_weights)] if args.vgg_weights else []
    rep = Reproduction(args.data, args.out, scale, inputs, target, args.split, extra,
                       lambda message: print(message, file=sys.stderr, flush=True))
    runs = dict.fromkeys(row.run for table in chosen for row in table.rows)  # distinct, in table order
    no_vgg = missing_vgg_weights(args.vgg_weights) if any(run.framework == "pgan" for run in runs) else None
    if no_vgg:
        rep.not_run["pgan"] = NO_VGG
        print(f"warning: the pGAN rows are not run: {no_vgg}; give --vgg-weights FILE to run them", file=sys.stderr,
              flush=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        if args.jobs > 1:
            try:
                rep.train_in_parallel([run for run in runs if run.framework not in rep.not_run], args.jobs)
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP as Stopped: every child has stopped
                return stopped(exc)
        for table in chosen:
            header, cells, commands = table_rows(rep, table)
            for path in write_table(rep, table, header, cells, commands, stamp):
                print(path, flush=True)
    except CommandFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    from mrsynth.io.atomic import atomic_output

    with atomic_output(args.out / "commands.sh", overwrite=True) as tmp:
        tmp.write_text("#!/bin/sh\n# every command behind the tables, in order\n" + "\n".join(rep.commands) + "\n")
    print(json.dumps({"scale": scale.name, "scenario": rep.scenario, "runs_trained": len(rep.trained),
                      "runs_reused": len(rep.reused),
                      "runs_not_run": sum(run.framework in rep.not_run for run in runs)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
