"""Micro-Manager acquisition through pymmcore-plus, and the simulated microscope.

This layer never imports torch, Qt, ``inference`` or ``gui``.
"""

from ._core import DeepzCore

__all__ = ["DeepzCore"]
