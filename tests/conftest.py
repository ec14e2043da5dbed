import os
import shutil
import tempfile

import pytest

# Helper modules that hold asserts moved out of test files: pytest rewrites their asserts too, so a
# failure there shows the compared values as it did in the test file (before they are imported).
pytest.register_assert_rewrite("tests.addon_helpers", "tests.extension_zips", "tests.wire_helpers")

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


@pytest.fixture(scope="module")
def addon_registered():
    """The Blender add-on registered for a whole test module, unregistered after it (the bpy
    add-on tests: `pytestmark = pytest.mark.usefixtures("addon_registered")`). Here rather than
    in tests/addon_helpers.py: a fixture function from there, imported into a test module, left
    a pytest run of test_generate_dataset_passes_ultralytics_checker hanging at exit inside bpy
    (Blender's shutdown, run when the bpy module is freed, never ran)."""
    import blender_addon

    blender_addon.register()
    yield
    blender_addon.unregister()
