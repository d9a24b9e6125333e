"""Seconds per 240x240x155 volume and peak memory of ``mrsynth synthesize`` (docs/performance.md, Volume synthesis).

Each configuration runs in a fresh Python process, so that its peak resident memory (``ru_maxrss``) is its own;
inside it the allocator is tuned as the command line does it (``mrsynth.runtime``; ``--library-allocator`` skips
that), the model is loaded once, ``--warmup`` untimed volumes are synthesized (oneDNN picks its kernels then),
and then ``--repeats`` timed volumes follow. The input is the shipped demo case (examples/demo, TCGA-FG-6692 T1 + T2,
240x240x155 at 1 mm), written to a temporary folder as a real user's output would be.

Model: ``--model`` (a path, registry name or hf://...), else the registry's default model for (t1, t2), else a
stand-in with random weights of ``--preset``'s architecture (timing does not depend on the weights' values; the
output says which one was used).

    python benchmarks/synthesize_volume.py                        # default model (or stand-in), CPU
    python benchmarks/synthesize_volume.py --preset tiny light --batch-size 1 8 32
    python benchmarks/synthesize_volume.py --preset paper --device cuda --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo"
INPUTS = {"t1": DEMO / "TCGA-FG-6692-t1n.nii.gz", "t2": DEMO / "TCGA-FG-6692-t2w.nii.gz"}


def worker(args: argparse.Namespace) -> dict:
    """One configuration, in this process: load, warm up, time ``repeats`` volumes, report peak memory."""
    import resource

    import torch

    from mrsynth.inference import Synthesizer
    from mrsynth.runtime import tune_cpu_allocator

    if not args.library_allocator:
        tune_cpu_allocator()  # what `mrsynth synthesize` does at start-up
    folder = Path(tempfile.mkdtemp(prefix="mrsynth-bench-"))
    model, source = resolve_model(args.model, args.preset, folder)
    started = time.perf_counter()
    synth = Synthesizer(model, device=args.device, batch_size=args.batch_size)
    load_s = time.perf_counter() - started
    if synth.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times, cpu_times, totals = [], [], []
    for run in range(args.warmup + args.repeats):
        out = folder / f"run{run}.nii.gz"
        started, cpu_started = time.perf_counter(), time.process_time()
        synth(INPUTS, out, progress=lambda done, total: totals.append(total))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        out.unlink()
        if run >= args.warmup:
            times.append(elapsed)
            cpu_times.append(cpu)
    record = {
        "model": source, "allocator_tuned": not args.library_allocator, "params_m": round(sum(p.numel() for p in synth.model.parameters()) / 1e6, 3),
        "device": synth.device, "batch_size": synth.batch_size, "threads": torch.get_num_threads(),
        "volume": "240x240x155", "slices_with_signal": totals[-1],
        "load_s": round(load_s, 2), "seconds_per_volume": [round(t, 2) for t in times],
        "median_s": round(sorted(times)[len(times) // 2], 2),
        "cpu_s_per_volume": [round(t, 1) for t in cpu_times],  # all threads; less sensitive to a busy machine
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    if synth.device.startswith("cuda"):
        record["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        record["gpu"] = torch.cuda.get_device_name()
    return record


def resolve_model(model: str | None, preset_name: str | None, folder: Path) -> tuple[Path, str]:
    """The checkpoint to time and a description of it."""
    from mrsynth.errors import InputError
    from mrsynth.inference import resolve_checkpoint

    if model is not None:
        return resolve_checkpoint(model, ["t1", "t2"]), model
    if preset_name is None:
        try:
            path = resolve_checkpoint(None, ["t1", "t2"])
            return path, f"registry default ({path.name})"
        except InputError:
            preset_name = "light"
    from mrsynth.checkpoint import default_normalization, save_checkpoint
    from mrsynth.models import build_model, preset

    path = save_checkpoint(folder / f"{preset_name}.safetensors", build_model(preset(preset_name)), {
        "scenario": {"inputs": ["t1", "t2"], "target": "flair"}, "normalization": default_normalization(),
        "slice_size": [240, 240], "voxel_size_mm": [1, 1, 1], "skull_stripped": True, "training": {}})
    return path, f"agi-net {preset_name} preset, random weights (stand-in)"


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint path, registry name or hf://... (default: registry default)")
    parser.add_argument("--preset", nargs="*", help="random-weight stand-ins of these presets (tiny, light, paper)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, nargs="*", default=[None], help="default: mrsynth's own default")
    parser.add_argument("--warmup", type=int, default=1, help="untimed volumes first (oneDNN picks kernels)")
    parser.add_argument("--repeats", type=int, default=2, help="timed volumes after the warm-up")
    parser.add_argument("--library-allocator", action="store_true",
                        help="leave glibc's allocator as a library user gets it (no mrsynth.runtime tuning)")
    parser.add_argument("--json", type=Path, help="also write every record to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.preset = args.preset[0] if args.preset else None
        args.batch_size = args.batch_size[0]
        print(json.dumps(worker(args)))
        return
    host = machine()
    print(f"# {host['cpu']}, {host['cores']} cores, load average {host['load_average_1min']} at start", file=sys.stderr)
    print("| model | params (M) | device | batch | s / volume (median) | each run | CPU s / volume | peak RSS (GiB) "
          "| load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    records = []
    for preset_name in args.preset or [None]:
        for batch_size in args.batch_size:
            command = [sys.executable, __file__, "--worker", "--device", args.device, "--repeats", str(args.repeats),
                       "--warmup", str(args.warmup)]
            command += ["--model", args.model] if args.model else []
            command += ["--preset", preset_name] if preset_name else []
            command += ["--batch-size", str(batch_size)] if batch_size else []
            command += ["--library-allocator"] if args.library_allocator else []
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"benchmark run failed:\n{done.stderr}")
            record = {**json.loads(done.stdout.strip().splitlines()[-1]), **machine()}
            records.append(record)
            print(f"| {record['model']} | {record['params_m']} | {record['device']} | {record['batch_size']} | "
                  f"{record['median_s']} | {', '.join(map(str, record['seconds_per_volume']))} | "
                  f"{', '.join(map(str, record['cpu_s_per_volume']))} | {record['peak_rss_gib']} | "
                  f"{record['load_average_1min']} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": host, "records": records}, indent=2))


if __name__ == "__main__":
    main()
