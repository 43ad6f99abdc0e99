"""deepz-live's import namespace.

The layers live in folders at the repository's top level (``acquisition/``,
``inference/``, ``live/``, ``gui/`` and the data folder ``hardware_configs/``); this
package maps them, through relative symbolic links, to import names that no other
distribution uses: ``deepz_live.acquisition``, ``deepz_live.inference`` (independent
of each other), ``deepz_live.live`` (composes the two) and ``deepz_live.gui`` (the
panel, on top of live).
The public facade and the command line are ``deepz`` (``import deepz``).
"""
