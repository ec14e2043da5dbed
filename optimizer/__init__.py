"""autosim's headless optimizer: simulators, task models, algorithms and the `autosim` CLI."""

from optimizer import compat as _compat

_compat.install()
