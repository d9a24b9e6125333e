"""Human tables (rich) in the layout of the paper: scenarios as column groups, PSNR / SSIM / MAE under each."""

from __future__ import annotations

from typing import Any, Sequence

from mrsynth.metrics import METRICS

HEADERS = {"psnr": "PSNR (dB)", "ssim": "SSIM (%)", "mae": "MAE (x100)"}
DIGITS = {"psnr": 2, "ssim": 2, "mae": 2}

# The scenario order of the paper's Table 1 (IXI) and Table 2 (BraTS 2023).
PAPER_SCENARIOS = {
    "ixi": ("t2,pd->t1", "t1,pd->t2", "t1,t2->pd"),
    "brats": ("t2,flair->t1", "t1,flair->t2", "t1,t2->flair"),
}


def scenario_order(scenarios: Sequence[str], dataset: str | None = None) -> list[str]:
    """Scenarios in the paper's column order for ``dataset``, others after them in order of appearance."""
    known = [s for s in PAPER_SCENARIOS.get(dataset or "", ()) if s in scenarios]
    return known + [s for s in dict.fromkeys(scenarios) if s not in known]


def _cell(stats: dict[str, float] | None, metric: str, with_std: bool) -> str:
    if stats is None:
        return "-"
    text = f"{stats['mean']:.{DIGITS[metric]}f}"
    return f"{text} ± {stats['std']:.{DIGITS[metric]}f}" if with_std else text


def paper_table(summaries: Sequence[dict[str, Any]], dataset: str | None = None, title: str | None = None,
                with_std: bool = True, width: int | None = None) -> Any:
    """Rows = models, column groups = scenarios (Tables 1-2); cells are mean ± std over slices.

    Given the console's ``width``, a table wider than it (many scenarios, e.g. every bundled BraTS model at once)
    becomes :func:`long_table` instead, whose rows fit an 80-column terminal instead of folding into letters.
    """
    table = _wide_table(summaries, dataset, title, with_std)
    if width is not None and _natural_width(table) > width:
        return long_table(summaries, dataset, title, with_std)
    return table


def long_table(summaries: Sequence[dict[str, Any]], dataset: str | None = None, title: str | None = None,
               with_std: bool = True) -> Any:
    """One row per model and scenario, scenarios in the paper's order: the same cells as :func:`paper_table`."""
    from rich.table import Table

    order = {scenario: i for i, scenario in enumerate(scenario_order([s["scenario"] for s in summaries], dataset))}
    table = Table(title=title, show_lines=False)
    table.add_column("Scenario", no_wrap=True)
    table.add_column("Model", overflow="fold")
    for metric in METRICS:
        table.add_column(HEADERS[metric], justify="right", no_wrap=True)
    for record in sorted(summaries, key=lambda r: order[r["scenario"]]):  # stable: models keep their order
        table.add_row(record["scenario"], record["model"], *(_cell(record[m], m, with_std) for m in METRICS))
    return table


def _natural_width(table: Any) -> int:
    """The width ``table`` takes when nothing has to wrap."""
    from rich.console import Console

    console = Console(width=100_000)
    return console.measure(table).maximum


def _wide_table(summaries: Sequence[dict[str, Any]], dataset: str | None, title: str | None, with_std: bool) -> Any:
    from rich.table import Table

    scenarios = scenario_order([s["scenario"] for s in summaries], dataset)
    table = Table(title=title, show_lines=False)
    table.add_column("Model", overflow="fold")  # a long path wraps whole
    for scenario in scenarios:
        for i, metric in enumerate(METRICS):
            table.add_column(f"{scenario}\n{HEADERS[metric]}" if i == 0 else f"\n{HEADERS[metric]}", justify="right")
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for record in summaries:
        by_model.setdefault(record["model"], {})[record["scenario"]] = record
    for model, rows in by_model.items():
        cells = [_cell(rows[sc][m] if sc in rows else None, m, with_std) for sc in scenarios for m in METRICS]
        table.add_row(model, *cells)
    return table


def shift_table(summaries: Sequence[dict[str, Any]], perturbed: str) -> Any:
    """The misalignment curve as numbers: rows = shift levels, columns = model x metric (means over slices)."""
    from rich.table import Table

    models = list(dict.fromkeys(s["model"] for s in summaries))
    levels = sorted({s["shift_px"] for s in summaries})
    table = Table(title=f"Random translation of the {perturbed} input (Fig. 3)")
    table.add_column("Shift (px)", justify="right")
    for model in models:
        for i, metric in enumerate(METRICS):
            table.add_column(f"{model}\n{HEADERS[metric]}" if i == 0 else f"\n{HEADERS[metric]}", justify="right")
    index = {(s["model"], s["shift_px"]): s for s in summaries}
    for level in levels:
        cells = [_cell(index.get((model, level), {}).get(m), m, False) for model in models for m in METRICS]
        table.add_row(f"{level:g}", *cells)
    return table


def paired_table(records: Sequence[dict[str, Any]]) -> Any:
    """Paired Wilcoxon tests: b - a per metric, with the number of slices and the p-value."""
    from rich.table import Table

    table = Table(title="Paired per-slice differences (b - a), Wilcoxon signed-rank")
    for name, justify in (("Scenario", "left"), ("a", "left"), ("b", "left"), ("Metric", "left"), ("n", "right"),
                          ("Mean diff", "right"), ("Median diff", "right"), ("p", "right")):
        table.add_column(name, justify=justify)
    for r in records:
        table.add_row(r["scenario"], r["a"], r["b"], HEADERS[r["metric"]], str(r["n"]), f"{r['mean_diff']:+.3f}",
                      f"{r['median_diff']:+.3f}", f"{r['p_value']:.2g}")
    return table
