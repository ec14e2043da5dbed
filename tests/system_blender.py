"""Environment for running the system `blender` executable from a test."""

from __future__ import annotations

import os
from pathlib import Path


def system_blender_env(user_resources: Path, **extra: str) -> dict[str, str]:
    """os.environ without an activated venv. A system Blender's embedded Python takes its
    prefix from the first python3 on PATH, so an activated venv would hand it that venv's
    site-packages (this checkout's editable install) instead of Debian's (OpenImageIO)."""
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(user_resources), **extra)
    venv = env.pop("VIRTUAL_ENV", None)
    env.pop("VIRTUAL_ENV_PROMPT", None)
    if venv:
        bin_dir = os.path.join(venv, "bin")
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if os.path.normpath(p) != os.path.normpath(bin_dir))
    return env
