"""Micro-Manager configuration files shipped with deepz-live.

The files live next to this module so that they are found both from a source checkout
and from an installed wheel.
"""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
SIMULATOR_CONFIG = CONFIG_DIR / "simulator.cfg"

__all__ = ["CONFIG_DIR", "SIMULATOR_CONFIG"]
