"""Data sources: labelled (or unlabelled) samples streamed in chunks in the model's input layout."""

from sdaudit.data.base import Dataset, InputLayout, Sampling
from sdaudit.data.open import DataOptions, open_dataset
from sdaudit.data.preprocess import Preprocess

__all__ = ["DataOptions", "Dataset", "InputLayout", "Preprocess", "Sampling", "open_dataset"]
