"""One short GPU run that checks the CUDA roll kernel and times it: the script behind benchmarks/gpu_check.sh.

1. parity of the CuPy kernels with the torch reference evaluated in float64 (fresh random inputs; float32 must
   stay under 1e-5 relative error in the output and every gradient; float16 / bfloat16 are reported too);
2. torch.autograd.gradcheck in float64 of the torch path on the GPU (the oracle the kernels are held to);
3. a full-width AGI-Net forward and backward with the kernel, against the torch path (TF32 off);
4. a table: roll-op time (kernel vs torch) for every AGI-Net stage width, and the generator's training step
   (forward, L1 loss, backward, Adam) for ResUnet and AGI-Net at batch 16, 256x256, with and without AMP.

Exit status: 0 all checks passed, 1 a check failed, 2 no GPU or no CuPy. Prints markdown tables on stdout
(ready for docs/performance.md) and, with --json, writes every figure to a file.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mrsynth.models import build_model, preset  # noqa: E402
from mrsynth.models.roll import rolled_kernel, rolled_kernel_reference  # noqa: E402
from mrsynth.ops import cuda_roll_status  # noqa: E402
from mrsynth.ops import cupy_roll  # noqa: E402

PARITY_LIMIT_F32 = 1e-5
HALF_LIMITS = {torch.float16: 2e-3, torch.bfloat16: 1e-2}
STAGE_WIDTHS = {"down1": 64, "down2": 128, "down3 / up1": 256, "body": 512}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def cuda_ms(fn: Callable[[], object], warmup: int, iters: int) -> float:
    """Median GPU time of fn in milliseconds, measured with CUDA events around each call."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def roll_problem(c_out, c_in, k_h, k_w, groups, batch, magnitude, gen, dtype=torch.float32):
    weight = torch.randn(c_out, c_in, k_h, k_w, generator=gen, device="cuda").to(dtype)
    offsets = (2 * torch.rand(batch, groups, 2, generator=gen, device="cuda") - 1) * magnitude
    offsets[0, 0] = torch.tensor([-3.4 * k_w - 0.3, 2.6 * k_h + 0.45], device="cuda")  # |o| > k, both signs
    scale = 0.2 + torch.rand(batch, groups, generator=gen, device="cuda")
    grad_out = torch.randn(batch, c_out, c_in, k_h, k_w, generator=gen, device="cuda").to(dtype)
    return weight, offsets, scale, grad_out


def parity(seed: int) -> tuple[list[dict], bool]:
    """Kernel vs float64 reference: output and the three gradients, for odd/even/non-square k, n = 1 and 8."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    cases = [  # (c_out, c_in, k_h, k_w, groups, batch, magnitude, dtype)
        (64, 64, 3, 3, 8, 8, 7.0, torch.float32),
        (64, 64, 3, 3, 1, 1, 0.9, torch.float32),
        (32, 32, 4, 4, 8, 1, 9.0, torch.float32),
        (32, 32, 4, 4, 1, 8, 2.5, torch.float32),
        (24, 40, 5, 5, 8, 3, 12.0, torch.float32),
        (8, 16, 3, 5, 2, 2, 6.0, torch.float32),
        (512, 512, 3, 3, 8, 16, 3.0, torch.float32),
        (256, 256, 3, 3, 8, 16, 3.0, torch.float16),
        (256, 256, 3, 3, 8, 16, 3.0, torch.bfloat16),
    ]
    rows, ok = [], True
    for c_out, c_in, k_h, k_w, groups, batch, magnitude, dtype in cases:
        weight, offsets, scale, grad_out = roll_problem(c_out, c_in, k_h, k_w, groups, batch, magnitude, gen, dtype)
        leaves = [t.clone().requires_grad_() for t in (weight, offsets, scale)]
        out = cupy_roll.rolled_kernel_cuda(*leaves)
        out.backward(grad_out)
        ref_leaves = [t.detach().double().requires_grad_() for t in (weight, offsets, scale)]
        ref = rolled_kernel_reference(*ref_leaves)
        ref.backward(grad_out.double())
        errors = [relative_error(out.detach(), ref.detach())]
        errors += [relative_error(leaf.grad, r.grad) for leaf, r in zip(leaves, ref_leaves)]
        limit = PARITY_LIMIT_F32 if dtype == torch.float32 else HALF_LIMITS[dtype]
        passed = max(errors) < limit
        ok &= passed
        rows.append({"case": f"{c_out}x{c_in}x{k_h}x{k_w} n={groups} B={batch} |o|<={magnitude:g}",
                     "dtype": str(dtype).replace("torch.", ""), "out": errors[0], "d_weight": errors[1],
                     "d_offsets": errors[2], "d_scale": errors[3], "limit": limit, "passed": passed})
    return rows, ok


def gradcheck_torch_path(seed: int) -> bool:
    """gradcheck in float64 through the dispatcher (float64 runs the torch implementation), on the GPU."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    weight = torch.randn(3, 8, 3, 3, generator=gen, device="cuda", dtype=torch.float64, requires_grad=True)
    base = torch.randint(-5, 5, (2, 4, 2), generator=gen, device="cuda").double()
    offsets = (base + 0.2 + 0.6 * torch.rand(2, 4, 2, generator=gen, device="cuda", dtype=torch.float64)).requires_grad_()
    scale = torch.rand(2, 4, generator=gen, device="cuda", dtype=torch.float64, requires_grad=True)
    return bool(torch.autograd.gradcheck(rolled_kernel, (weight, offsets, scale)))


def agi_net_parity(seed: int) -> dict:
    """Paper-width AGI-Net, forward + backward with each backend; TF32 off so the rolls are the only difference."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(seed)
    model = build_model(preset("paper")).cuda()
    with torch.no_grad():  # the offset heads start at zero: move them so that the rolls really roll
        for module in model.modules():
            if hasattr(module, "offset_head"):
                module.offset_head.weight.normal_(0.0, 3.0)
    x = torch.rand(2, 2, 128, 128, device="cuda")
    target = torch.rand(2, 1, 128, 128, device="cuda")
    launches = []
    original_launch = cupy_roll._launch

    def counting_launch(name, device, grid, args):
        launches.append(name)
        original_launch(name, device, grid, args)

    results = {}
    cupy_roll._launch = counting_launch
    try:
        for backend in ("torch", "cuda"):
            os.environ["MRSYNTH_ROLL_BACKEND"] = backend
            model.zero_grad(set_to_none=True)
            out = model(x)
            loss = (out - target).abs().mean()
            loss.backward()
            grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            results[backend] = (out.detach(), grads)
    finally:
        cupy_roll._launch = original_launch
        os.environ.pop("MRSYNTH_ROLL_BACKEND", None)
        torch.backends.cudnn.allow_tf32 = True
    out_err = relative_error(results["cuda"][0], results["torch"][0])
    grad_err = relative_error(results["cuda"][1], results["torch"][1])
    forward_launches = sum("forward" in name for name in launches)
    backward_launches = sum("backward" in name for name in launches)
    cagr_layers = sum(1 for m in model.modules() if hasattr(m, "routing") and m.routing is not None)
    passed = out_err < 1e-4 and grad_err < 1e-3 and forward_launches == backward_launches == cagr_layers
    return {"output_rel_err": out_err, "grad_rel_err": grad_err, "cagr_layers": cagr_layers,
            "kernel_forward_launches": forward_launches, "kernel_backward_launches": backward_launches,
            "passed": passed}


def call_without_grad(fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> None:
    with torch.no_grad():
        fn(*args)


def call_and_backward(fn: Callable[..., torch.Tensor], leaves: list[torch.Tensor], grad_out: torch.Tensor) -> None:
    fn(*leaves).backward(grad_out)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor,
               amp: bool) -> None:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        loss = (model(x) - target).abs().mean()
    loss.backward()
    optimizer.step()


def roll_timings(batch: int, warmup: int, iters: int, seed: int) -> list[dict]:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    rows = []
    for stage, width in STAGE_WIDTHS.items():
        weight, offsets, scale, grad_out = roll_problem(width, width, 3, 3, 8, batch, 3.0, gen)
        leaves = [t.clone().requires_grad_() for t in (weight, offsets, scale)]
        row = {"stage": stage, "channels": width}
        for name, fn in (("kernel", cupy_roll.rolled_kernel_cuda), ("torch", rolled_kernel_reference)):
            row[f"{name}_fwd_ms"] = cuda_ms(functools.partial(call_without_grad, fn, weight, offsets, scale),
                                            warmup, iters)
            row[f"{name}_fwd_bwd_ms"] = cuda_ms(functools.partial(call_and_backward, fn, leaves, grad_out),
                                                warmup, iters)
        rows.append(row)
    return rows


def train_step_timings(batch: int, size: int, warmup: int, steps: int, seed: int) -> list[dict]:
    """Generator training step (forward, L1, backward, Adam) per architecture and precision."""
    torch.backends.cudnn.benchmark = True
    configs = [("ResUnet", "resunet", "torch"), ("AGI-Net, torch roll", "agi-net", "torch"),
               ("AGI-Net, CUDA roll", "agi-net", "cuda")]
    rows = []
    for amp in (False, True):
        for label, arch, backend in configs:
            os.environ["MRSYNTH_ROLL_BACKEND"] = backend
            torch.manual_seed(seed)
            row = {"model": label, "precision": "bf16 autocast" if amp else "fp32 (TF32 convs)"}
            step = None
            try:
                model = build_model(preset("paper", arch=arch)).cuda().train()
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
                x = torch.rand(batch, 2, size, size, device="cuda")
                target = torch.rand(batch, 1, size, size, device="cuda")
                step = functools.partial(train_step, model, optimizer, x, target, amp)
                torch.cuda.reset_peak_memory_stats()
                ms = cuda_ms(step, warmup, steps)
                row.update(ms_per_step=ms, images_per_s=batch * 1000.0 / ms,
                           peak_gib=torch.cuda.max_memory_allocated() / 2**30)
            except torch.cuda.OutOfMemoryError:
                row.update(ms_per_step=None, images_per_s=None, peak_gib=None, note="out of memory")
            finally:
                model = optimizer = x = target = step = None  # free this configuration's memory before the next
                torch.cuda.empty_cache()
                os.environ.pop("MRSYNTH_ROLL_BACKEND", None)
            rows.append(row)
    return rows


def markdown(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (key, header, format)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            cells.append("n/a" if value is None else format(value, fmt) if fmt else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per configuration")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="default: fresh (time-based), printed")
    parser.add_argument("--skip-train", action="store_true", help="parity and roll-op timings only")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 100000

    if not torch.cuda.is_available():
        print("error: no CUDA device visible to torch; this check needs a GPU", file=sys.stderr)
        return 2
    usable, detail = cuda_roll_status()
    if not usable:
        print(f"error: the CUDA roll kernel is not usable: {detail}", file=sys.stderr)
        return 2
    import cupy

    device = torch.cuda.get_device_name()
    started = time.perf_counter()
    cupy_roll.kernel(torch.cuda.current_device(), "group_roll_forward_f32")  # compiles the whole module (NVRTC)
    compile_s = time.perf_counter() - started
    report: dict = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
                    "cupy": cupy.__version__, "seed": seed, "compile_s": compile_s, "kernel_source": detail}
    print(f"# GPU check: {device}, torch {torch.__version__} (CUDA {torch.version.cuda}), cupy {cupy.__version__}, "
          f"seed {seed}; module compiled or loaded from cache in {compile_s:.2f} s\n")

    rows, parity_ok = parity(seed)
    report["parity"] = rows
    print("## Parity with the float64 torch reference (relative error)\n")
    print(markdown(rows, [("case", "case", ""), ("dtype", "dtype", ""), ("out", "out", ".1e"),
                          ("d_weight", "d weight", ".1e"), ("d_offsets", "d offsets", ".1e"),
                          ("d_scale", "d lambda", ".1e"), ("limit", "limit", ".0e"), ("passed", "ok", "")]))

    gradcheck_ok = gradcheck_torch_path(seed)
    report["gradcheck_float64_torch_path"] = gradcheck_ok
    print(f"\ngradcheck (float64, torch path on the GPU): {'passed' if gradcheck_ok else 'FAILED'}")

    net = agi_net_parity(seed)
    report["agi_net"] = net
    print(f"AGI-Net (paper widths, B=2, 128x128) forward+backward, CUDA roll vs torch roll: output rel err "
          f"{net['output_rel_err']:.1e}, gradient rel err {net['grad_rel_err']:.1e}, kernel launches "
          f"{net['kernel_forward_launches']} fwd / {net['kernel_backward_launches']} bwd for {net['cagr_layers']} "
          f"CAGR layers: {'passed' if net['passed'] else 'FAILED'}\n")

    torch.backends.cudnn.benchmark = True
    timings = roll_timings(args.batch, warmup=5, iters=30, seed=seed)
    for row in timings:
        row["fwd_speedup"] = row["torch_fwd_ms"] / row["kernel_fwd_ms"]
        row["fwd_bwd_speedup"] = row["torch_fwd_bwd_ms"] / row["kernel_fwd_bwd_ms"]
    report["roll_op"] = timings
    print(f"## Roll op, B={args.batch}, C_in = C_out, k=3, n=8, fp32 (median ms)\n")
    print(markdown(timings, [("stage", "stage", ""), ("channels", "C", "d"), ("kernel_fwd_ms", "kernel fwd", ".3f"),
                             ("torch_fwd_ms", "torch fwd", ".3f"), ("fwd_speedup", "speed-up", ".1f"),
                             ("kernel_fwd_bwd_ms", "kernel fwd+bwd", ".3f"),
                             ("torch_fwd_bwd_ms", "torch fwd+bwd", ".3f"), ("fwd_bwd_speedup", "speed-up", ".1f")]))

    if not args.skip_train:
        steps = train_step_timings(args.batch, args.size, args.warmup, args.steps, seed)
        report["train_step"] = steps
        print(f"\n## Generator training step, B={args.batch}, {args.size}x{args.size}, 2 inputs, Adam "
              f"(median of {args.steps} after {args.warmup} warm-up)\n")
        print(markdown(steps, [("model", "model", ""), ("precision", "precision", ""),
                               ("ms_per_step", "ms / step", ".1f"), ("images_per_s", "images / s", ".1f"),
                               ("peak_gib", "peak GiB", ".1f")]))

    ok = parity_ok and gradcheck_ok and net["passed"]
    report["passed"] = ok
    report["total_s"] = time.perf_counter() - started
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    print(f"\n{'ALL CHECKS PASSED' if ok else 'SOME CHECKS FAILED'} in {report['total_s']:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
