"""Every CUDA source compiles with nvcc for Ampere (sm_80) and Hopper (sm_90), warnings as errors; no GPU needed.

The loader hands NVRTC a single self-contained string (group_roll.cu with its header pasted in): that exact text
is compiled too, from a folder without the header, so a stray #include or a missing definition shows up here
rather than on the first GPU run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mrsynth.ops.sources import prepared_source

REPO = Path(__file__).resolve().parents[1]
CUDA_DIR = REPO / "cuda"
ARCHES = ("80", "90")
STRICT = ["--Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra,-Werror"]


def find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return None


@pytest.fixture(scope="module")
def nvcc() -> str:
    path = find_nvcc()
    if path is None:
        pytest.skip("nvcc not found")
    return path


def test_sources_exist() -> None:
    assert sorted(p.name for p in CUDA_DIR.glob("*.cu")) == ["group_roll.cu"]
    assert (CUDA_DIR / "group_roll.cuh").is_file()


def test_every_cu_file_and_the_nvrtc_string_compile(nvcc: str, tmp_path: Path) -> None:
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHES]
    jobs = {}
    for source in sorted(CUDA_DIR.glob("*.cu")):
        # One nvcc call builds both architectures (device code for each, host code once), object file only.
        cmd = [nvcc, "-c", "-std=c++17", *gencode, *STRICT, "-o", str(tmp_path / f"{source.stem}.o"), str(source)]
        jobs[source.name] = cmd
    pasted = tmp_path / "nvrtc" / "group_roll_pasted.cu"
    pasted.parent.mkdir()
    text = prepared_source()
    assert "#include" not in text  # NVRTC gets no include path: the string must stand alone
    pasted.write_text(text)
    for arch in ARCHES:  # device code only, as NVRTC builds it
        jobs[f"pasted sm_{arch}"] = [nvcc, "--ptx", "-std=c++17", f"-arch=compute_{arch}", *STRICT[:2],
                                     "-o", str(tmp_path / f"pasted_{arch}.ptx"), str(pasted)]
    running = {name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
               for name, cmd in jobs.items()}
    failures = []
    for name, process in running.items():
        output, _ = process.communicate(timeout=300)
        if process.returncode != 0 or "warning" in output.lower():
            failures.append(f"{name}: exit {process.returncode}\n{output}")
    assert not failures, "\n".join(failures)
    ptx = (tmp_path / "pasted_90.ptx").read_text()
    for kind in ("forward", "backward"):
        for suffix in ("f32", "f16", "bf16"):
            assert f".entry group_roll_{kind}_{suffix}(" in ptx  # unmangled names, as the loader asks for them
