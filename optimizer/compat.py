"""Make the pinned third-party stack usable on any machine before it is imported.

Two problems, both measured (see ENVIRONMENT.md):
- the pinned torchvision wheel is CUDA-built; on a CPU torch its C extension does not load and
  `import torchvision` dies with "operator torchvision::nms does not exist". ultralytics imports
  torchvision, so the detector would be unusable. When (and only when) the extension fails to
  load, we define `torchvision::nms` / `torchvision::qnms` ourselves with a plain-torch kernel.
- ultralytics probes the network (DNS, fonts, settings sync) unless told to stay offline.

`install()` is idempotent and cheap: it sets environment variables and adds an import hook; torch
is imported only when torchvision itself is.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

_STATE = {"installed": False, "ops_defined": False}
_LIBS: list = []  # keeps torch.library.Library objects alive


def _config_dir() -> Path:
    base = os.environ.get("AUTOSIM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "autosim"
    )
    path = Path(base)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        path = Path(tempfile.gettempdir()) / "autosim"
        path.mkdir(parents=True, exist_ok=True)
    return path


def configure_offline_environment() -> None:
    """Keep ultralytics and matplotlib from touching the network or unwritable folders."""
    cfg = _config_dir()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cfg / "ultralytics"))
    os.environ.setdefault("MPLCONFIGDIR", str(cfg / "matplotlib"))
    for key in ("YOLO_CONFIG_DIR", "MPLCONFIGDIR"):
        Path(os.environ[key]).mkdir(parents=True, exist_ok=True)
    _install_font(Path(os.environ["YOLO_CONFIG_DIR"]))


def _install_font(yolo_dir: Path) -> None:
    """ultralytics downloads Arial.ttf unless it finds one; matplotlib ships DejaVuSans."""
    targets = [yolo_dir / "Arial.ttf", yolo_dir / "Ultralytics" / "Arial.ttf"]
    if all(t.exists() for t in targets):
        return
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return
    mpl = Path(spec.submodule_search_locations[0])
    font = mpl / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not font.exists():
        return
    for target in targets:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(font, target)


def _greedy_nms(boxes, scores, iou_threshold: float):
    """Reference greedy NMS (torchvision semantics: indices sorted by decreasing score)."""
    import torch

    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True)
    b = boxes[order].float()
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-12)
    suppress = (iou > iou_threshold).cpu()
    keep: list[int] = []
    removed = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        removed |= suppress[i]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def _define_torchvision_ops() -> None:
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")

    def qnms(qdets, scores, iou_threshold):
        return _greedy_nms(qdets.dequantize(), scores, iou_threshold)

    for key in ("CPU", "CUDA"):
        lib.impl("nms", _greedy_nms, key)
        lib.impl("qnms", qnms, key)
    _LIBS.append(lib)
    _STATE["ops_defined"] = True


def _torchvision_extension_loads(package_dir: str) -> bool:
    import torch

    for name in os.listdir(package_dir):
        if name.startswith("_C.") and name.endswith((".so", ".pyd")):
            try:
                torch.ops.load_library(os.path.join(package_dir, name))
                return True
            except (OSError, RuntimeError):
                return False
    return False


class _TorchvisionLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, package_dir: str) -> None:
        self._inner = inner
        self._package_dir = package_dir

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module) -> None:
        if not _STATE["ops_defined"] and not _torchvision_extension_loads(self._package_dir):
            _define_torchvision_ops()
        self._inner.exec_module(module)
        if _STATE["ops_defined"]:
            # Our ops exist now; torchvision's guard must let nms through.
            module.extension._has_ops = lambda: True


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not spec.submodule_search_locations:
            return spec
        spec.loader = _TorchvisionLoader(spec.loader, spec.submodule_search_locations[0])
        return spec


def install() -> None:
    """Idempotent: environment for offline ultralytics, and the torchvision import hook."""
    if _STATE["installed"]:
        return
    configure_offline_environment()
    if "torchvision" not in sys.modules:
        sys.meta_path.insert(0, _TorchvisionFinder())
    _STATE["installed"] = True


def torchvision_ops_patched() -> bool:
    """True when autosim supplied torchvision's NMS (CPU torch), False when its extension loaded."""
    return bool(_STATE["ops_defined"])
