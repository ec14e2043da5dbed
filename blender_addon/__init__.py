"""autosim Blender add-on: the AutoSim sidebar tab, live distributions and the render server.

Loads as a Blender 4.2+ extension (blender_manifest.toml; package `bl_ext.<repo>.autosim`) and
as a legacy add-on (bl_info; e.g. Debian's Blender 3.4.1). Importing this package does not
import bpy: the bpy modules (preferences, properties, operators, authoring_ops, ui_list, ui)
load in register(), so plain-Python code can import `blender_addon.server`, `.labels`,
`.scenes`, `.authoring` freely.

Outside this repository `protocol` is not importable: the extension zip carries it under
`_vendor/` and the pyzmq wheels under `wheels/` (Blender installs those for extensions; for a
legacy install `ensure_zmq()` unpacks a matching one on first use).
"""

bl_info = {
    "name": "AutoSim",
    "author": "autosim developers",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "View3D > Sidebar > AutoSim",
    "description": "Learnable scene-parameter distributions: edit them, watch an optimizer move "
                   "them live, serve renders over ZeroMQ, export datasets",
    "category": "Render",
}

import atexit  # noqa: E402
import glob  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
VENDOR_DIR = os.path.join(_HERE, "_vendor")
WHEELS_DIR = os.path.join(_HERE, "wheels")
_MODULES = ("preferences", "properties", "operators", "authoring_ops", "ui_list", "ui")
_registered = False


def _ensure_protocol() -> None:
    """Make `protocol` importable: the repository's, else the copy vendored into the zip."""
    try:
        import protocol.dataset  # noqa: F401
        import protocol.space  # noqa: F401
        import protocol.wire  # noqa: F401
        return
    except ImportError:
        pass
    if not os.path.isdir(os.path.join(VENDOR_DIR, "protocol")):
        return  # nothing to fall back on; the import error surfaces where protocol is used
    for name in [m for m in sys.modules if m == "protocol" or m.startswith("protocol.")]:
        del sys.modules[name]  # an unrelated module called `protocol` must not shadow ours
    if VENDOR_DIR not in sys.path:
        sys.path.insert(0, VENDOR_DIR)


_ensure_protocol()


def _wheel_fits(filename: str) -> bool:
    """Does a wheel file name's python/platform tag fit this interpreter (a cheap check)?"""
    parts = os.path.basename(filename)[:-4].split("-")
    if len(parts) < 5:
        return False
    py, plat = parts[-3], parts[-1]
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    if tag not in py.split(".") and not py.startswith("py3"):
        return False
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if sys.platform.startswith("linux")
               else "arm64"}.get(machine, machine)
    if plat == "any":
        return True
    if sys.platform.startswith("linux"):
        return "linux" in plat and machine in plat
    if sys.platform == "darwin":
        return "macosx" in plat and (machine in plat or "universal2" in plat)
    if sys.platform == "win32":
        return plat == ("win_amd64" if machine == "x86_64" else f"win_{machine}")
    return False


def ensure_zmq():
    """Import pyzmq; for a legacy install, unpack a bundled wheel that fits and retry.

    (Extensions get their wheels installed by Blender itself, onto sys.path.)"""
    try:
        import zmq

        return zmq
    except ImportError as exc:
        wheels = [w for w in sorted(glob.glob(os.path.join(WHEELS_DIR, "pyzmq-*.whl")))
                  if _wheel_fits(w)]
        if not wheels:
            raise ImportError("AutoSim needs pyzmq: install it into Blender's Python, or use "
                              "the extension zip that bundles it") from exc
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    for root in (os.path.join(VENDOR_DIR, "_wheels"),
                 os.path.join(tempfile.gettempdir(), f"autosim-wheels-{os.getuid()}"
                              if hasattr(os, "getuid") else "autosim-wheels")):
        target = os.path.join(root, tag)
        try:
            os.makedirs(target, exist_ok=True)
            if not os.path.isdir(os.path.join(target, "zmq")):
                with zipfile.ZipFile(wheels[-1]) as zf:
                    zf.extractall(target)
        except OSError:
            continue
        if target not in sys.path:
            sys.path.append(target)
        import zmq

        return zmq
    raise ImportError("AutoSim could not unpack its bundled pyzmq wheel")


def _module(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def register() -> None:
    """Register every module's classes (see _MODULES), in order."""
    global _registered
    if _registered:
        unregister()
    done = []
    try:
        for name in _MODULES:
            _module(name).register()
            done.append(name)
    except Exception:
        for name in reversed(done):
            _unregister_quietly(name)
        raise
    _registered = True
    import bpy

    if not bpy.app.binary_path:
        # bpy as a Python module: a process exiting with our classes (Python draw/update
        # callbacks) or a timer still registered hangs, so unregister on the way out.
        atexit.register(unregister)


def _unregister_quietly(name: str) -> None:
    mod = sys.modules.get(f"{__name__}.{name}")
    if mod is None:
        return
    try:
        mod.unregister()
    except Exception as exc:  # keep unregistering the rest
        print(f"[autosim] unregister {name}: {type(exc).__name__}: {exc}", file=sys.stderr)


def unregister() -> None:
    """Stop a running render server, remove its timer and handlers, unregister everything."""
    global _registered
    atexit.unregister(unregister)
    for name in reversed(_MODULES):
        _unregister_quietly(name)
    _registered = False
