import os
import tempfile

import pytest

# Importing bpy writes ~/.config/blender/<ver>; keep tests (and the servers they start) off $HOME.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="autosim-blender-"))
os.environ.setdefault("AUTOSIM_CACHE_DIR", tempfile.mkdtemp(prefix="autosim-cache-"))


@pytest.fixture
def float64():
    """Exact comparisons need double precision; restore the default for other modules."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
