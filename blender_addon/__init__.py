"""autosim Blender add-on (registration arrives with the UI)."""
