"""Cycles settings, one-frame rendering and label extraction (bpy).

configure() once per scene, then render_frame() per latent. Pixels leave Blender through an
uncompressed multilayer EXR on /dev/shm read back with the OpenImageIO module bundled in the
bpy wheel (the Render Result has no pixels in background mode). The image is converted to
8-bit sRGB in numpy, matching Blender's own PNG with the 'Standard' view transform; labels come
from the object-index pass. assign() writes a property only when it changes.

A latent renders the same pixels whatever the process rendered before (docs/protocol.md 9):
every render_frame() has a new Cycles session (_fresh_session), and assign() tags the ID of a
Python-defined property it writes so any depsgraph sees the new value (_tag).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import bpy
import numpy as np

from .labels import boxes_from_instances, linear_to_srgb_u8, mask_from_instances
from .scenes.primitives import mesh_primitive, new_object, principled, reset_data

# mesh_primitive, new_object, principled, reset_data: the builders' helpers, re-exported here
# where they used to live

__all__ = [
    "RenderResult", "configure", "render_frame", "set_quality", "set_resolution", "read_exr",
    "reset_data", "new_object", "principled", "mesh_primitive", "assign",
]

_GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")


@dataclass
class RenderResult:
    image: np.ndarray      # (H, W, 3) uint8 sRGB, top row first
    mask: np.ndarray       # (H, W) uint8 class ids, 0 background
    instances: np.ndarray  # (H, W) uint16 object pass_index, 0 none
    boxes: np.ndarray      # (N, 4) float32 x0, y0, x1, y1 pixels, x1/y1 exclusive
    classes: np.ndarray    # (N,) int32
    render_s: float        # seconds in bpy.ops.render.render
    extract_s: float = 0.0  # seconds to save, read back and derive labels


# ----------------------------------------------------------------------------- settings


def _select_device(scene, device: str) -> str:
    device = device.upper()
    if device not in ("CPU", "GPU", "AUTO"):
        raise ValueError(f"device must be CPU, GPU or AUTO, got {device!r}")
    if device != "CPU":
        prefs = bpy.context.preferences.addons["cycles"].preferences
        for backend in _GPU_BACKENDS:
            try:
                prefs.compute_device_type = backend
            except TypeError:  # backend not compiled into this build
                continue
            gpus = [d for d in prefs.get_devices_for_type(backend) if d.type == backend]
            if gpus:
                for d in prefs.devices:
                    d.use = d.type == backend
                scene.cycles.device = "GPU"
                return backend
        prefs.compute_device_type = "NONE"
        if device == "GPU":
            raise RuntimeError("device='GPU' but Cycles found no GPU compute device")
    scene.cycles.device = "CPU"
    return "CPU"


def _finite(v, default: float) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def set_resolution(scene, width: int, height: int) -> None:
    """Output size in pixels (only touches the scene when it changes)."""
    r = scene.render
    for attr, v in (("resolution_x", int(width)), ("resolution_y", int(height)),
                    ("resolution_percentage", 100)):
        if getattr(r, attr) != v:
            setattr(r, attr, v)


def set_quality(scene, samples, bounces) -> tuple[int, int]:
    """Cycles samples (clipped to [1, 4096]) and light bounces (clipped to [0, 64]);
    every per-type bounce limit follows `bounces`. Returns the values set."""
    s = int(min(max(round(_finite(samples, 1.0)), 1), 4096))
    b = int(min(max(round(_finite(bounces, 0.0)), 0), 64))
    cy = scene.cycles
    for attr, v in (("samples", s), ("max_bounces", b), ("diffuse_bounces", b),
                    ("glossy_bounces", b), ("transmission_bounces", b), ("volume_bounces", b),
                    ("transparent_max_bounces", b)):
        assign(cy, attr, v)
    return s, b


def _exr_settings(scene) -> None:
    ims = scene.render.image_settings
    if ims.file_format != "OPEN_EXR_MULTILAYER":
        ims.file_format = "OPEN_EXR_MULTILAYER"
    if ims.exr_codec != "NONE":
        ims.exr_codec = "NONE"
    if ims.color_depth != "32":
        ims.color_depth = "32"


def configure(scene, width: int, height: int, samples: int = 4, bounces: int = 4,
              device: str = "CPU", threads: int | None = None) -> str:
    """Set Cycles up for fast, deterministic, label-friendly frames. Returns the device used
    ("CPU" or the GPU backend name). device: "CPU", "AUTO" (GPU if Cycles finds one) or "GPU"."""
    r = scene.render
    r.engine = "CYCLES"
    set_resolution(scene, width, height)
    r.use_persistent_data = False  # see _fresh_session
    r.use_compositing = False
    r.use_sequencer = False
    r.film_transparent = False
    r.dither_intensity = 0.0
    r.threads_mode = "FIXED"
    r.threads = int(threads or os.cpu_count() or 1)
    cy = scene.cycles
    used = _select_device(scene, device)
    cy.use_denoising = False
    cy.use_adaptive_sampling = False
    cy.seed = 0
    cy.use_animated_seed = False
    set_quality(scene, samples, bounces)
    scene.display_settings.display_device = "sRGB"
    vs = scene.view_settings
    vs.view_transform = "Standard"
    vs.look = "None"
    vs.exposure = 0.0
    vs.gamma = 1.0
    vs.use_curve_mapping = False
    for vl in scene.view_layers:
        vl.use_pass_combined = True
        vl.use_pass_object_index = True
    _exr_settings(scene)
    _tag(scene)  # the cycles.* settings above are Python-defined properties (see _tag)
    return used


# ----------------------------------------------------------------------------- rendering

_LIBC = None
if sys.platform != "win32":
    with contextlib.suppress(OSError):
        _LIBC = ctypes.CDLL(None)


def _flush_c() -> None:
    if _LIBC is not None:
        _LIBC.fflush(None)


@contextlib.contextmanager
def _quiet_stdout(enabled: bool = True):
    """Send fd 1 (Blender's C-level "Fra:1 Mem:..." / "Saved:" chatter) to /dev/null."""
    if not enabled:
        yield
        return
    try:
        sys.stdout.flush()
    except (AttributeError, ValueError):
        pass
    _flush_c()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 at all
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        _flush_c()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


_TMPDIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


_OIIO = None


def _oiio():
    """The OpenImageIO module: system-wide if importable, else the copy inside the bpy wheel."""
    global _OIIO
    if _OIIO is None:
        try:
            import OpenImageIO as oiio  # noqa: N813
        except ImportError:
            # The bpy wheel's own copy; and Debian's, which a system Blender misses when an
            # activated venv on PATH makes its embedded Python take that venv's prefix.
            version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
            for site in (os.path.join(bpy.utils.resource_path("LOCAL"), "python", "lib",
                                      version, "site-packages"),
                         "/usr/lib/python3/dist-packages", f"/usr/lib/{version}/dist-packages"):
                if os.path.isdir(site) and site not in sys.path:
                    sys.path.append(site)
            import OpenImageIO as oiio  # noqa: N813
        oiio.attribute("threads", 1)
        _OIIO = oiio
    return _OIIO


def read_exr(path: str) -> dict[str, np.ndarray]:
    """All channels of an EXR as float32 (H, W) arrays keyed by channel name, top row first."""
    oiio = _oiio()
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise OSError(f"OpenImageIO cannot open {path}: {oiio.geterror()}")
    try:
        spec = inp.spec()
        data = inp.read_image(0, 0, 0, spec.nchannels, "float")
    finally:
        inp.close()
    if data is None:
        raise OSError(f"OpenImageIO cannot read {path}")
    data = np.asarray(data).reshape(spec.height, spec.width, spec.nchannels)
    return {name: data[:, :, i] for i, name in enumerate(spec.channelnames)}


def _find(channels: dict, suffix: str) -> np.ndarray:
    for name, arr in channels.items():
        if name.endswith(suffix):
            return arr
    raise KeyError(f"render has no channel *{suffix}; got {sorted(channels)}")


def _fresh_session(scene) -> None:
    """Render each frame in a new Cycles session, as a fresh process would.

    A session kept by persistent data carries state from one render into the next, so an image
    depended on what the process had rendered before: its evaluated scene missed writes to
    scene.cycles.* (samples, bounces; see _tag), it never lowers its integrator's sample count
    (Session::update_scene only raises it; the reset flag it gets was cleared just before) and
    lays the blue-noise pattern out over that count, and it renders slightly differently once
    it has held more objects. configure() switches persistent data off; a scene that has it on
    (the artist's, in the add-on) has its session freed here."""
    if scene.render.use_persistent_data:
        scene.render.use_persistent_data = False  # its RNA update frees the session
        scene.render.use_persistent_data = True


def render_frame(scene, objects, *, png_path: str | None = None,
                 quiet: bool = True) -> RenderResult:
    """Render `scene` and return pixels and labels.

    objects: the (pass_index, class_id) pairs apply() returned (the visible objects).
    png_path: also save Blender's own 8-bit PNG of the same render there (for checks/export).
    quiet: keep Blender's per-frame console output off fd 1.
    """
    class_of = {int(p): int(c) for p, c in objects}
    t0 = time.perf_counter()
    _fresh_session(scene)
    with _quiet_stdout(quiet):
        bpy.ops.render.render(write_still=False, scene=scene.name)
    t1 = time.perf_counter()
    result = bpy.data.images["Render Result"]
    path = os.path.join(_TMPDIR or tempfile.gettempdir(), f"autosim-{uuid.uuid4().hex}.exr")
    try:
        _exr_settings(scene)
        with _quiet_stdout(quiet):
            result.save_render(path, scene=scene)
        channels = read_exr(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    rgb = np.stack([_find(channels, f".Combined.{c}") for c in "RGB"], axis=-1)
    image = linear_to_srgb_u8(rgb)
    instances = np.rint(_find(channels, ".IndexOB.X")).astype(np.uint16)
    mask = mask_from_instances(instances, class_of)
    boxes, classes = boxes_from_instances(instances, class_of)
    t2 = time.perf_counter()
    if png_path is not None:
        _save_png(scene, result, png_path, quiet)
    return RenderResult(image=image, mask=mask, instances=instances, boxes=boxes,
                        classes=classes, render_s=t1 - t0, extract_s=t2 - t1)


def _save_png(scene, result, path: str, quiet: bool) -> None:
    ims = scene.render.image_settings
    saved = {k: getattr(ims, k) for k in ("color_mode", "compression")}
    ims.file_format = "PNG"
    ims.color_mode = "RGB"
    ims.color_depth = "8"
    ims.compression = 0
    try:
        with _quiet_stdout(quiet):
            result.save_render(path, scene=scene)
    finally:
        _exr_settings(scene)
        for k, v in saved.items():
            setattr(ims, k, v)


# ----------------------------------------------------------------------------- scene helpers


def _same(a, b) -> bool:
    if isinstance(b, float | int) and not isinstance(b, bool):
        return isinstance(a, float | int) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
    if isinstance(b, tuple | list):
        try:
            return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
        except TypeError:
            return False
    return a == b


def assign(owner, attr: str, value) -> bool:
    """owner.attr = value unless it already holds that value (up to float32 rounding), so an
    unchanged property does not tag the depsgraph and make Cycles re-sync. True if set."""
    if _same(getattr(owner, attr), value):
        return False
    setattr(owner, attr, value)
    prop = owner.bl_rna.properties.get(attr)
    if prop is None or getattr(prop, "is_runtime", True):
        _tag(owner.id_data)
    return True


def _tag(idb) -> None:
    """Tag an ID written through a Python-defined property (an add-on's, e.g. scene.cycles.*).

    Such a write tags only the transform, geometry and animation of its ID, which a Scene does
    not have: a depsgraph that lives on (persistent data's, the viewport's) keeps the old
    evaluated copy, and Cycles with persistent data went on rendering the samples and bounces
    of an earlier latent until something else touched the scene. update_tag() makes every
    depsgraph copy the ID again."""
    if idb is not None:
        idb.update_tag()
