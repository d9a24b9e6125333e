"""Shared fixtures: seeded RNGs and paths to the real sample data beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def private_kernel_cache(tmp_path_factory: pytest.TempPathFactory):
    """Compiled CPU kernels and their timed form choices go to a per-run folder, not the user's cache.

    The dispatch keeps the form it timed per CPU and shape; a choice timed under a test run's load (or with an
    injected delay) must never decide what the user's own inference runs later.
    """
    import os

    previous = os.environ.get("MRSYNTH_KERNEL_CACHE")
    os.environ["MRSYNTH_KERNEL_CACHE"] = str(tmp_path_factory.mktemp("kernel-cache"))
    yield
    if previous is None:
        os.environ.pop("MRSYNTH_KERNEL_CACHE", None)
    else:
        os.environ["MRSYNTH_KERNEL_CACHE"] = previous


@pytest.fixture
def fresh_kernel_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private kernel and choices cache, the CPU-kernel switches at their defaults, nothing remembered in-process."""
    from mrsynth.ops import cpu_isa, cpu_stem, stem_dispatch

    monkeypatch.setenv(cpu_stem.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(cpu_stem.SWITCH_ENV, raising=False)
    monkeypatch.delenv(cpu_isa.ISA_ENV, raising=False)
    cpu_stem.load.cache_clear()
    stem_dispatch._MEMORY.clear()
    yield tmp_path
    cpu_stem.load.cache_clear()
    stem_dispatch._MEMORY.clear()
