"""Evaluation of synthesis models with the paper's protocol (``mrsynth eval`` is a thin layer over this).

- :mod:`.models`: resolve and load checkpoints, batched slice prediction;
- :mod:`.engine`: per-slice metrics of several models on identical slices, at misalignment levels;
- :mod:`.perturb`: the Fig. 3 random sub-pixel translation of one input;
- :mod:`.stats`: mean ± std per slice and per subject, paired Wilcoxon tests;
- :mod:`.tables`, :mod:`.figures`, :mod:`.report`: rich tables, PNG figures, ``metrics.csv`` / ``summary.json``;
- :mod:`.nifti`: a prediction volume against a ground-truth volume, from any tool.

Notebook use::

    from mrsynth.data.store import SliceStore
    from mrsynth.evaluation import evaluate_store, load_models, summary_record
    models = load_models(["agi.safetensors", "resunet.safetensors"])
    ev = evaluate_store(SliceStore("store"), models, split="test", levels=[0, 1, 2])
    print([summary_record(r) for r in ev.results.values()])
"""

from mrsynth.evaluation.engine import Evaluation, SliceResults, evaluate_case, evaluate_store, new_evaluation
from mrsynth.evaluation.models import EvalModel, load_models, predict_slices, registered_models_for
from mrsynth.evaluation.perturb import parse_levels
from mrsynth.evaluation.stats import paired_test, paired_tests, subject_means, summary_record

__all__ = [
    "EvalModel",
    "Evaluation",
    "SliceResults",
    "evaluate_case",
    "evaluate_store",
    "load_models",
    "new_evaluation",
    "paired_test",
    "paired_tests",
    "parse_levels",
    "predict_slices",
    "registered_models_for",
    "subject_means",
    "summary_record",
]
