"""Volume input/output and geometry, on SimpleITK and nibabel only (no torch: preprocessing imports this too).

- :func:`read_volume` / :func:`write_volume`: validated float32 3-D reading, atomic writing with the reference's
  NIfTI header;
- :func:`to_canonical` / :func:`from_canonical`: a fixed anatomical voxel order for slicing;
- :func:`resample_to`, :func:`register_rigid`, :func:`overlap_fraction`: putting scans on one grid.
"""

from mrsynth.io.atomic import atomic_output, check_output_path
from mrsynth.io.orientation import CANONICAL, from_canonical, orientation_of, to_canonical
from mrsynth.io.resample import overlap_fraction, physical_bounds, register_rigid, resample_to
from mrsynth.io.volumes import read_volume, same_grid, write_volume

__all__ = [
    "CANONICAL",
    "atomic_output",
    "check_output_path",
    "from_canonical",
    "orientation_of",
    "overlap_fraction",
    "physical_bounds",
    "read_volume",
    "register_rigid",
    "resample_to",
    "same_grid",
    "to_canonical",
    "write_volume",
]
