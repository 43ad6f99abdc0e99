"""Exceptions and warnings raised by the inference package."""

from __future__ import annotations


class InferenceError(Exception):
    """Base class for errors raised by ``inference``."""


class StackFormatError(InferenceError):
    """A z-stack file cannot be read or lacks what is needed to use it."""


class ModelFileError(InferenceError):
    """A model file is missing, corrupt, or not a deepz-live model."""


class ModelMismatchWarning(UserWarning):
    """A model is applied to data that differs from what it was trained on."""


class ModelQualityWarning(UserWarning):
    """A model's own validation says it does not beat doing nothing (the identity)."""
