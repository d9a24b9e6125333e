"""The allocator tuning takes effect on glibc and changes no result."""

from __future__ import annotations

import subprocess
import sys


def test_tuning_takes_effect_on_linux_glibc_and_is_idempotent() -> None:
    code = "from mrsynth.runtime import tune_cpu_allocator as t; print(t(), t())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if sys.platform.startswith("linux"):
        assert out == ["True", "True"]


def test_tuned_process_computes_the_same_output() -> None:
    code = (
        "import sys, torch\n"
        "from mrsynth.runtime import tune_cpu_allocator\n"
        "if sys.argv[1] == '1': tune_cpu_allocator()\n"
        "from mrsynth.models import build_model, preset\n"
        "torch.manual_seed(0); m = build_model(preset('tiny')).eval()\n"
        "x = torch.rand(2, 2, 64, 64, generator=torch.Generator().manual_seed(1))\n"
        "with torch.inference_mode(): print(m(x).double().sum().item(), m(x).abs().max().item())\n"
    )
    runs = [subprocess.run([sys.executable, "-c", code, flag], capture_output=True, text=True, check=True).stdout
            for flag in ("0", "1")]
    assert runs[0] == runs[1] and runs[0].strip()
