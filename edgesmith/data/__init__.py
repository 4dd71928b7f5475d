"""Calibration and evaluation data: the built-in digits set, .npz files, or a user function."""

from edgesmith.data.sources import Batch, Dataset, load_dataset

__all__ = ["Batch", "Dataset", "load_dataset"]
