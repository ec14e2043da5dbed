"""Helpers shared by the add-on packaging tests (test_extension.py, test_extension_install.py):
the zips they install, built from this checkout, and the result line their scripts print."""

import glob
import json
import os
from pathlib import Path

from blender_addon import build_extension as bx

ROOT = Path(__file__).resolve().parents[1]
WHEEL_DIRS = ("/opt/pypi/files", "/opt/wheels", os.path.expanduser("~/.cache/pip"))


def _local_pyzmq_wheel():
    """A cp311 linux x86_64 pyzmq wheel already on this machine (never downloaded)."""
    for d in WHEEL_DIRS:
        hits = sorted(glob.glob(os.path.join(d, "**", "pyzmq-*-cp311-*x86_64*.whl"),
                                recursive=True))
        hits = [h for h in hits if "linux" in h]
        if hits:
            return Path(hits[-1])
    return None


def build_zips(tmp_path_factory):
    """(extension zip without wheels, extension zip with the local pyzmq wheel or None,
    legacy zip)."""
    out = tmp_path_factory.mktemp("dist")
    plain = bx.build(out / "plain", legacy=True)
    wheel = _local_pyzmq_wheel()
    with_wheel = bx.build(out / "wheel", [wheel], legacy=True) if wheel else None
    return plain, with_wheel, plain.with_name(plain.stem + "-legacy.zip")


def _result(proc):
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("AUTOSIM_RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].split(" ", 1)[1])
