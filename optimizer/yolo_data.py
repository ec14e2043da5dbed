"""Loading a YOLO-format detection folder: images/ + labels/ (+ data.yaml), e.g. a user's own
validation set or one that `autosim render` wrote.

    DIR/images/NAME.png|jpg    any RGB image
    DIR/labels/NAME.txt        one object a line: "class cx cy w h", normalised to [0, 1]
                               (a polygon line "class x1 y1 x2 y2 ..." counts as its bounding box);
                               a missing or empty file means an image without objects
    DIR/data.yaml              optional; its `names` name the YOLO classes

Class ids follow the rest of autosim: 0 is background, so an object of YOLO class c gets id c + 1
(the convention of the render servers' boxes). Images of different sizes need `imgsz`, which
letterboxes every image into an imgsz x imgsz square (aspect kept, grey 114 padding, as ultralytics'
validator does); without it a size mismatch is an error rather than a silent resize.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from optimizer.data import DatasetError
from protocol.dataset import DATA_YAML, IMAGES, LABELS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
PAD_VALUE = 114  # ultralytics' letterbox grey
_EDGE_TOL = 0.01  # normalised coordinates may overshoot [0, 1] by this much (rounding in exporters)


@dataclasses.dataclass
class DetectionSet:
    """Images and their boxes; the same fields as a rendered Batch, so a task takes either."""

    images: np.ndarray          # (N, H, W, 3) uint8
    boxes: list[np.ndarray]     # N x (n_i, 4) float32 x0, y0, x1, y1 in pixels
    classes: list[np.ndarray]   # N x (n_i,) int32, YOLO class + 1 (0 = background)
    names: list[str]            # YOLO class names: names[c] is class id c + 1
    stems: list[str]

    def __len__(self) -> int:
        return len(self.images)


def letterbox(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize (keeping the aspect ratio) and centre-pad to size x size; boxes follow."""
    from PIL import Image

    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image, boxes
    r = min(size / h, size / w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    top, left = (size - nh) // 2, (size - nw) // 2
    out = np.full((size, size, 3), PAD_VALUE, np.uint8)
    out[top:top + nh, left:left + nw] = resized
    scale = np.array([nw / w, nh / h, nw / w, nh / h], np.float32)
    shift = np.array([left, top, left, top], np.float32)
    return out, (boxes.astype(np.float32) * scale + shift).astype(np.float32)


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc


def read_names(root: Path) -> list[str] | None:
    """Class names from DIR/data.yaml (`names` as a list or {id: name}), or None without one."""
    path = root / DATA_YAML
    if not path.exists():
        return None
    import yaml

    try:
        doc = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: not readable YAML ({exc})") from exc
    names = doc.get("names") if isinstance(doc, dict) else None
    if names is None:
        return None
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: `names` keys must be class ids 0..n-1") from exc
        if ids != list(range(len(ids))):
            raise DatasetError(f"{path}: `names` must number the classes 0..{len(ids) - 1}, "
                               f"got ids {ids}")
        return [str(names.get(i, names.get(str(i)))) for i in ids]
    raise DatasetError(f"{path}: `names` must be a list or a mapping of id to name")


def read_labels(path: Path, width: int, height: int,
                n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One YOLO label file -> boxes (n,4) x0,y0,x1,y1 px float32, classes (n,) int32 = YOLO + 1."""
    boxes, classes = [], []
    if not path.exists():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int32)
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable text file ({exc})") from exc
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        polygon = len(fields) >= 7 and len(fields) % 2 == 1
        if len(fields) != 5 and not polygon:
            raise DatasetError(f"{where}: expected 'class cx cy w h' (5 fields) or a polygon "
                               f"'class x1 y1 x2 y2 x3 y3 ...', got {len(fields)} field(s): "
                               f"{line.strip()!r}")
        try:
            cls_f = float(fields[0])
            values = np.array([float(v) for v in fields[1:]], np.float64)
        except ValueError:
            raise DatasetError(f"{where}: fields must be numbers, got {line.strip()!r}") from None
        if not np.isfinite(values).all() or cls_f != int(cls_f) or cls_f < 0:
            raise DatasetError(f"{where}: class must be an integer >= 0 and coordinates finite, "
                               f"got {line.strip()!r}")
        cls = int(cls_f)
        if n_classes is not None and cls >= n_classes:
            raise DatasetError(f"{where}: class {cls} but data.yaml names only {n_classes} "
                               f"classes (0..{n_classes - 1})")
        if polygon:
            xs, ys = values[0::2], values[1::2]
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max(), ys.max()
        else:
            cx, cy, w, h = values
            if w <= 0 or h <= 0:
                raise DatasetError(f"{where}: width and height must be > 0, got {line.strip()!r}")
            x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        if min(x0, y0) < -_EDGE_TOL or max(x1, y1) > 1 + _EDGE_TOL:
            raise DatasetError(f"{where}: coordinates must be normalised to [0, 1] (YOLO format), "
                               f"got {line.strip()!r}")
        box = np.clip([x0, y0, x1, y1], 0.0, 1.0) * [width, height, width, height]
        if box[2] <= box[0] or box[3] <= box[1]:
            raise DatasetError(f"{where}: the box has no area, got {line.strip()!r}")
        boxes.append(box)
        classes.append(cls + 1)
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int32))


def load_yolo_folder(folder: str | Path, imgsz: int | None = None) -> DetectionSet:
    """Read DIR/images + DIR/labels (+ DIR/data.yaml). See the module docstring for the format."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    img_dir, label_dir = root / IMAGES, root / LABELS
    if not img_dir.is_dir():
        raise DatasetError(f"{root}: missing {IMAGES}/ (a YOLO folder holds images/ and labels/ "
                           f"with matching file names; `autosim render` writes this layout)")
    if not label_dir.is_dir():
        raise DatasetError(f"{root}: missing {LABELS}/ (one NAME.txt of 'class cx cy w h' lines "
                           f"per image NAME.png)")
    if imgsz is not None and int(imgsz) <= 0:
        raise DatasetError(f"imgsz must be positive, got {imgsz}")
    names = read_names(root)
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{img_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise DatasetError(f"{img_dir}: several images share a name ({', '.join(dup)}); each "
                           f"needs its own labels/NAME.txt")
    images, boxes, classes = [], [], []
    for path in files:
        image = _read_rgb(path)
        h, w = image.shape[:2]
        b, c = read_labels(label_dir / f"{path.stem}.txt", w, h,
                           None if names is None else len(names))
        if imgsz is not None:
            image, b = letterbox(image, b, int(imgsz))
        elif images and image.shape != images[0].shape:
            raise DatasetError(f"{path}: size {w}x{h} differs from the first image's "
                               f"{images[0].shape[1]}x{images[0].shape[0]} (pass imgsz to "
                               f"letterbox all images to one size)")
        images.append(image)
        boxes.append(b)
        classes.append(c)
    if names is None:
        top = max((int(c.max()) for c in classes if len(c)), default=0)
        names = [str(i) for i in range(top)]
    return DetectionSet(np.stack(images), boxes, classes, names, stems)
