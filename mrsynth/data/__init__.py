"""Datasets and slice stores: raw layouts (IXI, BraTS, folder) -> normalised slices that training reads."""
