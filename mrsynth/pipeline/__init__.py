"""The stages of a synthesis, one small module each, run in this order by :func:`mrsynth.pipeline.run.run_pipeline`:

check (:mod:`.request`) -> read (:mod:`.read`, :mod:`.checks`) -> align (:mod:`.align`) -> brain mask
(:mod:`.brainmask`) -> bias field (:mod:`.bias`, ``--n4``) -> canonical order and the model's voxel size in-plane
(:mod:`.spacing`) -> normalise (:mod:`.normalise`) -> slices (:mod:`.slices`) -> model (:mod:`.model`) -> output
median (:mod:`mrsynth.data.target_median`, for checkpoints that ask for it) -> restore (:mod:`.restore`) -> write
(:mod:`.write`); :mod:`.batch` runs it subject after subject.

The command line, batch mode and the Python API (:mod:`mrsynth.inference`) all call the same ``run_pipeline``.
Volume reading, resampling, registration and writing live in :mod:`mrsynth.io` (they serve preprocessing too). A
stage with nothing to do is skipped (and absent from the result's ``stages``), so a skull-stripped 1 mm scan goes
through read, align, normalise, model and restore only. Nothing here imports :mod:`mrsynth.inference` or the CLI.
"""
