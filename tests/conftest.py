import os
import tempfile

# Importing bpy writes ~/.config/blender/<ver>; keep tests (and the servers they start) off $HOME.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="autosim-blender-"))
os.environ.setdefault("AUTOSIM_CACHE_DIR", tempfile.mkdtemp(prefix="autosim-cache-"))
