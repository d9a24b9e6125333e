"""The stages of a synthesis, one small module each, in the order :class:`mrsynth.inference.Synthesizer` runs them:

read -> align -> brain mask (:mod:`.brainmask`) -> bias field (:mod:`.bias`, ``--n4``) -> in-plane resampling to the
model's voxel size (:mod:`.spacing`) -> normalise -> slices -> model -> restore -> write.

Reading, alignment and writing live in :mod:`mrsynth.io` (they serve preprocessing too); the stages here exist for
raw scans as they leave the scanner: skull on, any voxel size, a bias field. Each one is skipped (and absent from
the result's ``stages``) when it has nothing to do, so a skull-stripped 1 mm scan gives the same synthesis as before.
"""
