"""The ``mrsynth`` command line: one small module per command, each a thin layer over the library."""
