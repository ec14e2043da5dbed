import os
import shutil
import tempfile

import pytest

# Importing bpy writes ~/.config/blender/<ver>; keep tests (and the servers they start) off $HOME.
# A folder is made only for a variable that is not set, and removed when the session ends.
_MADE: list[str] = []
for _var, _prefix in (("BLENDER_USER_RESOURCES", "autosim-blender-"),
                      ("AUTOSIM_CACHE_DIR", "autosim-cache-")):
    if _var not in os.environ:
        _MADE.append(tempfile.mkdtemp(prefix=_prefix))
        os.environ[_var] = _MADE[-1]


def pytest_unconfigure(config):
    for path in _MADE:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def float64():
    """Exact comparisons need double precision; restore the default for other modules."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
