"""Weights that travel: the model registry, ``--model`` resolution with sha256 pins, Hub download and upload.

The public names other modules rely on: :func:`resolve_model` (``--model`` value -> verified local file, then
:func:`mrsynth.checkpoint.load_checkpoint` loads it without unpickling), :func:`load_registry`,
:func:`sha256_file` and :func:`push_checkpoint`. huggingface_hub is imported only when a download or upload
actually happens, so importing this package stays cheap for the command line.
"""

from __future__ import annotations

from mrsynth.hub.push import push_checkpoint
from mrsynth.hub.registry import (default_entry, find_entry, load_deprecations, load_registry, registry_path,
                                  targets_for, weights_dir)
from mrsynth.hub.resolve import download, parse_hf_spec, resolve_entry, resolve_model, sha256_file, verify_file

__all__ = [
    "default_entry", "download", "find_entry", "load_deprecations", "load_registry", "parse_hf_spec", "push_checkpoint",
    "registry_path", "resolve_entry", "resolve_model", "sha256_file", "targets_for", "verify_file", "weights_dir",
]
