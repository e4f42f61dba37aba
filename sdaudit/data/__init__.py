"""Data sources: labelled samples streamed in chunks in the model's input layout."""

from sdaudit.data.base import Dataset, InputLayout, Preprocess
from sdaudit.data.open import open_dataset

__all__ = ["Dataset", "InputLayout", "Preprocess", "open_dataset"]
