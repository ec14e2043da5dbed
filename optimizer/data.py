"""Loading a validation/test folder: the layout protocol.dataset writes, or a user's own.

Only images/ and masks/ (same file stems, PNG) are required; data.yaml names the classes when
present. Images of a different size than the run's are an error, not a silent resize.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from protocol.dataset import IMAGES, MASKS


class DatasetError(ValueError):
    """A folder that is not a usable dataset; the message names the file and the problem."""


@dataclasses.dataclass
class ImageSet:
    images: np.ndarray   # (N, H, W, 3) uint8
    masks: np.ndarray    # (N, H, W) uint8 class ids
    stems: list[str]

    def __len__(self) -> int:
        return len(self.images)


def _read_png(path: Path, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if mode == "RGB":
                return np.asarray(im.convert("RGB"))
            if im.mode not in ("L", "P", "I", "I;16"):
                raise DatasetError(f"{path}: a mask must be a single-channel image of class ids, "
                                   f"got mode {im.mode}")
            return np.asarray(im).astype(np.int64)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from exc


def load_image_set(folder: str | Path, n_classes: int | None = None) -> ImageSet:
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    img_dir, mask_dir = root / IMAGES, root / MASKS
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DatasetError(f"{root}: missing {d.name}/ (expected images/ and masks/ with "
                               f"matching PNG names; `autosim render` writes this layout)")
    stems = sorted(p.stem for p in img_dir.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    if not stems:
        raise DatasetError(f"{img_dir}: no .png or .jpg images")
    images, masks = [], []
    for stem in stems:
        img_path = next(p for p in (img_dir / f"{stem}.png", img_dir / f"{stem}.jpg")
                        if p.exists())
        mask_path = mask_dir / f"{stem}.png"
        if not mask_path.exists():
            raise DatasetError(f"{mask_path}: missing (every image needs a mask of the same name)")
        image, mask = _read_png(img_path, "RGB"), _read_png(mask_path, "L")
        if mask.shape != image.shape[:2]:
            raise DatasetError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]}, its image "
                               f"is {image.shape[1]}x{image.shape[0]}")
        if images and image.shape != images[0].shape:
            raise DatasetError(f"{img_path}: size {image.shape[1]}x{image.shape[0]} differs from "
                               f"the first image's {images[0].shape[1]}x{images[0].shape[0]}")
        if n_classes is not None and (mask.min() < 0 or mask.max() >= n_classes):
            raise DatasetError(f"{mask_path}: class id {int(mask.max())} outside "
                               f"0..{n_classes - 1}")
        images.append(image)
        masks.append(mask.astype(np.uint8))
    return ImageSet(np.stack(images), np.stack(masks), stems)
