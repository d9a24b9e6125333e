"""Which form of the routing stem runs (mrsynth/ops/stem_dispatch.py): the timing picks the faster one, its choice is
cached per CPU signature and shape, MRSYNTH_CPU_KERNELS forces a form, and every path gives the reference's result.
Also the ISA switch's user errors and the aarch64 cross-build of the kernel."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
import torch

from mrsynth.models.cagr import RoutingFunction
from mrsynth.ops import cpu_isa, cpu_stem, stem_dispatch
from stem_helpers import RUNNABLE_ISAS, randomised_routing
from synth_helpers import assert_one_error_line

needs_compiler = pytest.mark.skipif(cpu_stem.compiler() is None, reason="no C compiler on PATH")
DELAY_S = 0.2  # added to one form's every call: far above either form's CPU time on a 12x12 input


class DelayClock:
    """The process's CPU time plus the delays injected so far: a timing clock that a busy machine cannot skew.

    A wall clock would let another process's load make the fast form look slow; CPU time only counts this
    process, and the injected delay is added to it instead of being slept.
    """

    def __init__(self) -> None:
        self.injected = 0.0

    def __call__(self) -> float:
        return time.process_time() + self.injected


def slowed(function, calls: list[str], name: str, delay: float, clock: DelayClock):
    """``function`` that records its calls under ``name`` and first advances ``clock`` by ``delay`` seconds."""
    def wrapper(*args, **kwargs):
        calls.append(name)
        clock.injected += delay
        return function(*args, **kwargs)

    return wrapper


def routing_and_input(seed: int = 3) -> tuple[RoutingFunction, torch.Tensor, torch.Tensor]:
    """A random routing function (16 channels, 8 groups), a seeded non-zero input, and its float64 stem features."""
    routing = randomised_routing(16, 8, seed=seed)
    x = torch.randn(2, 16, 12, 12, generator=torch.Generator().manual_seed(seed)) * 2 + 0.5
    with torch.inference_mode():
        reference = routing.double().stem(x.double()).mean(dim=(2, 3))
    routing.float()
    return routing, x, reference


def features(routing: RoutingFunction, x: torch.Tensor) -> torch.Tensor:
    """The stem features the routing function computes, by whichever form the dispatch chooses."""
    with torch.inference_mode():
        if cpu_stem.applies(routing.stem, x, type(routing.stem[1])):
            return stem_dispatch.stem_features(routing.stem, x)
        return stem_dispatch.torch_stem_features(routing.stem, x)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want).norm() / want.norm()).item()


@needs_compiler
@pytest.mark.parametrize("slow", ["fused", "torch"])
def test_auto_picks_the_faster_form_when_one_is_slowed_on_purpose(fresh_kernel_cache, monkeypatch, slow: str) -> None:
    calls: list[str] = []
    clock = DelayClock()
    timed = stem_dispatch.time_forms
    monkeypatch.setattr(stem_dispatch, "time_forms", lambda forms, **kw: timed(forms, clock=clock, **kw))
    monkeypatch.setattr(stem_dispatch, "fused_stem_features",
                        slowed(cpu_stem.fused_stem_features, calls, "fused", DELAY_S if slow == "fused" else 0, clock))
    monkeypatch.setattr(stem_dispatch, "torch_stem_features",
                        slowed(stem_dispatch.torch_stem_features, calls, "torch", DELAY_S if slow == "torch" else 0,
                               clock))
    routing, x, reference = routing_and_input()
    got = features(routing, x)
    fast = "torch" if slow == "fused" else "fused"
    choice = stem_dispatch.recorded_choices()[stem_dispatch.shape_key(routing.stem, x)]
    assert choice["form"] == fast
    assert choice[f"{slow}_ms"] >= DELAY_S * 1e3 > choice[f"{fast}_ms"]
    timing_calls = 2 * (1 + stem_dispatch.TIMED_ROUNDS)
    assert calls[timing_calls:] == [fast]  # after the timing, the call itself runs the faster form
    assert relative_error(got, reference) < 1e-5
    calls.clear()
    features(routing, x)
    assert calls == [fast]  # remembered: no second timing


def test_time_forms_reports_each_forms_best_round_with_an_injected_clock() -> None:
    ticks = iter([0.0, 3.0, 3.0, 4.0, 10.0, 11.0, 11.0, 13.0, 20.0, 22.0, 22.0, 22.5])
    calls: list[str] = []
    best = stem_dispatch.time_forms({"fused": lambda: calls.append("f"), "torch": lambda: calls.append("t")},
                                    rounds=3, clock=lambda: next(ticks))
    assert best == {"fused": 1.0, "torch": 0.5}  # fused took 3, 1, 2; torch 1, 2, 0.5
    assert calls == ["f", "t"] + ["f", "t"] * 3  # one untimed call each first, then alternating


def test_the_timing_runs_on_a_bounded_number_of_pixels() -> None:
    # Big images: one is timed, whatever the batch, so a timing costs a few calls of one 256x256-sized stem.
    assert stem_dispatch.timed_batch(torch.empty(8, 16, 240, 240)) == 2
    assert stem_dispatch.timed_batch(torch.empty(32, 64, 256, 256)) == 1
    assert stem_dispatch.timed_batch(torch.empty(8, 128, 30, 30)) == 8  # small ones: the whole batch
    routing = RoutingFunction(64, 8)
    assert stem_dispatch.shape_key(routing.stem, torch.empty(5, 64, 256, 256)) == "1x64x256x256/8/2"


@needs_compiler
def test_the_cache_key_changes_with_the_cpu_signature(fresh_kernel_cache, monkeypatch) -> None:
    kernel = cpu_stem.active_kernel()
    monkeypatch.setattr(cpu_isa, "cpu_signature", lambda: "x86_64 | Machine A | avx2 fma")
    key_a = stem_dispatch.signature_key(kernel, threads=2)
    assert stem_dispatch.signature_key(kernel, threads=4) != key_a  # thread count is part of it
    routing, x, reference = routing_and_input()
    features(routing, x)
    shape = stem_dispatch.shape_key(routing.stem, x)
    assert shape in stem_dispatch.recorded_choices()
    from mrsynth.cli.info import collect_info

    assert collect_info()["cpu_stem_kernel"]["choices"] == stem_dispatch.recorded_choices()  # `mrsynth info` shows it

    stem_dispatch._MEMORY.clear()  # a later process on the same machine: the file's choice, no timing
    monkeypatch.setattr(stem_dispatch, "time_forms", lambda *a, **k: pytest.fail("timed again on the same CPU"))
    assert relative_error(features(routing, x), reference) < 1e-5

    monkeypatch.setattr(cpu_isa, "cpu_signature", lambda: "x86_64 | Machine B | avx2 fma avx512f")
    assert stem_dispatch.signature_key(kernel, threads=2) != key_a
    assert stem_dispatch.recorded_choices() == {}  # machine B sees none of A's choices in the shared cache
    timed = []
    monkeypatch.setattr(stem_dispatch, "time_forms", lambda forms, **k: timed.append(1) or {"fused": 1.0, "torch": 2.0})
    features(routing, x)
    assert timed == [1] and stem_dispatch.recorded_choices()[shape]["form"] == "fused"
    saved = (fresh_kernel_cache / stem_dispatch.choices_file(kernel).name).read_text()
    assert saved.count(shape) == 2 and saved.count('"form"') == 2  # both machines' choices kept in one file


@needs_compiler
@pytest.mark.parametrize(("switch", "chosen", "ran"), [
    ("on", None, "fused"), ("off", None, "torch"), ("auto", "fused", "fused"), ("auto", "torch", "torch"),
])
@pytest.mark.parametrize("isa", RUNNABLE_ISAS)
def test_every_dispatch_path_is_honoured_and_matches_the_float64_stem(
    fresh_kernel_cache, monkeypatch, switch: str, chosen: str | None, ran: str, isa: str
) -> None:
    monkeypatch.setenv(cpu_stem.SWITCH_ENV, switch)
    monkeypatch.setenv(cpu_isa.ISA_ENV, isa)
    if isa != "native":
        assert cpu_stem.active_kernel().isa == isa  # the build MRSYNTH_CPU_ISA asks for is the one that runs
    calls: list[str] = []
    clock = DelayClock()
    monkeypatch.setattr(stem_dispatch, "fused_stem_features",
                        slowed(cpu_stem.fused_stem_features, calls, "fused", 0, clock))
    monkeypatch.setattr(stem_dispatch, "torch_stem_features",
                        slowed(stem_dispatch.torch_stem_features, calls, "torch", 0, clock))
    timings = {"fused": 1.0, "torch": 2.0} if chosen == "fused" else {"fused": 2.0, "torch": 1.0}
    monkeypatch.setattr(stem_dispatch, "time_forms", lambda forms, **k: timings)  # injected: no real timing
    routing, x, reference = routing_and_input(seed=5)
    got = features(routing, x)
    assert calls == [ran]
    assert relative_error(got, reference) < 1e-5
    with torch.inference_mode():  # and through the model's own forward
        offsets, scale = routing(x)
        want_offsets, want_scale = (t.double() for t in routing.double()(x.double()))
    assert relative_error(offsets, want_offsets) < 1e-5 and relative_error(scale, want_scale) < 1e-5
    expected_choices = {stem_dispatch.shape_key(routing.stem, x)} if switch == "auto" else set()
    routing.float()
    assert set(stem_dispatch.recorded_choices()) == expected_choices  # only auto times and records


def test_unknown_isa_value_is_a_user_error(monkeypatch) -> None:
    from typer.testing import CliRunner

    from mrsynth.cli.app import app
    from mrsynth.errors import InputError

    monkeypatch.setenv(cpu_isa.ISA_ENV, "sse9")
    with pytest.raises(InputError, match="unknown value 'sse9'"):
        cpu_isa.requested_isa()
    assert_one_error_line(CliRunner().invoke(app, ["info"]), cpu_isa.ISA_ENV, "sse9")
    monkeypatch.delenv(cpu_isa.ISA_ENV)
    monkeypatch.setenv(cpu_stem.SWITCH_ENV, "fast")
    assert_one_error_line(CliRunner().invoke(app, ["info"]), cpu_stem.SWITCH_ENV, "fast")


def test_avx2_is_refused_where_the_cpu_lacks_it(monkeypatch) -> None:
    monkeypatch.setattr(cpu_isa.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu_isa, "cpu_flags", lambda: frozenset({"sse2", "avx"}))
    reason = cpu_isa.march_flags("avx2")
    assert isinstance(reason, str) and "avx2" in reason and "fma" in reason
    monkeypatch.setattr(cpu_isa.platform, "machine", lambda: "aarch64")
    assert "aarch64" in cpu_isa.march_flags("avx2")
    assert cpu_isa.march_flags("portable") == ("-march=armv8-a",)


CROSS_CC = "aarch64-linux-gnu-gcc"
needs_cross_compiler = pytest.mark.skipif(
    shutil.which(CROSS_CC) is None, reason="no aarch64 cross compiler (Debian: apt-get install gcc-aarch64-linux-gnu)"
)
DRIVER = Path(__file__).with_name("stem_layer_main.c")


@needs_cross_compiler
def test_the_kernel_cross_compiles_for_aarch64_neon(tmp_path) -> None:
    library = tmp_path / "routing_stem.so"
    done = subprocess.run(
        [CROSS_CC, *cpu_stem.CFLAGS, "-march=armv8-a", "-Wall", "-Werror", str(cpu_stem.SOURCE), "-o", str(library),
         "-lm"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    header = library.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
    assert b"portable" in library.read_bytes()  # the portable tiles (NEON's register budget) were compiled


def stem_file(routing: RoutingFunction, x: torch.Tensor) -> bytes:
    """The driver's input (tests/stem_layer_main.c): dimensions, eps, NHWC input, packed parameters per layer."""
    batch, channels, height, width = x.shape
    conv, norm = routing.stem[0], routing.stem[1]
    parts = [struct.pack("<6if", batch, height, width, channels, channels // conv.groups, len(routing.stem) // 3,
                         norm.eps), x.permute(0, 2, 3, 1).contiguous().numpy().tobytes()]
    for conv, norm in zip(routing.stem[0::3], routing.stem[1::3]):
        for tensor in (cpu_stem.pack_weight(conv), conv.bias, norm.weight, norm.bias):
            parts.append(tensor.detach().contiguous().numpy().tobytes())
    return b"".join(parts)


@needs_cross_compiler
@pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="no qemu-user (Debian: apt-get install qemu-user)")
def test_the_aarch64_build_matches_the_float64_stem_under_qemu(tmp_path) -> None:
    program = tmp_path / "stem-aarch64"
    flags = [flag for flag in cpu_stem.CFLAGS if flag not in ("-shared", "-fPIC")]
    done = subprocess.run([CROSS_CC, *flags, "-march=armv8-a", str(cpu_stem.SOURCE), str(DRIVER), "-o", str(program),
                           "-lm"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # Every kernel form on NEON's tiles: 1, 2 and 4 channels per group (shuffles on 4-lane vectors), 8 (broadcast,
    # 8 lanes), 16 and 32 (broadcast, 16 lanes); 21 pixels per row leave a partial tile.
    for channels, groups in [(8, 8), (16, 8), (32, 8), (64, 8), (128, 8), (96, 3)]:
        routing = randomised_routing(channels, groups, seed=channels)
        x = torch.randn(2, channels, 9, 21, generator=torch.Generator().manual_seed(channels)) * 2 + 0.5
        (tmp_path / "in.bin").write_bytes(stem_file(routing, x))
        run = subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(program), str(tmp_path / "in.bin"),
                              str(tmp_path / "out.bin")], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, (channels, groups, run.returncode, run.stderr)
        got = torch.frombuffer(bytearray((tmp_path / "out.bin").read_bytes()), dtype=torch.float32).view(2, channels)
        with torch.inference_mode():
            reference = routing.double().stem(x.double()).mean(dim=(2, 3))
        assert relative_error(got, reference) < 1e-5, (channels, groups)
