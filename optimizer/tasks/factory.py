"""The task model of a task name, and the folder format it reads: one place that knows which
task goes with which data layout (a scene only names its task)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optimizer.errors import CliError
from optimizer.tasks.base import Task


def load_folder(task: str, path: str | Path) -> Any:
    """A validation or test folder in the task's format: YOLO images/ + labels/ (detection)
    or images/ + masks/ (segmentation); a bad folder raises DatasetError."""
    if task == "detection":
        from optimizer.yolo_data import load_yolo_folder

        return load_yolo_folder(path)
    from optimizer.data import load_image_set

    return load_image_set(path)


def make_task(task: str, classes: list[str], data: Any, *, model: str | None = None,
              freeze: int = 0, flag: str = "--val") -> Task:
    """The task model for a rendered scene's classes; the folder's labels must fit them."""
    if task == "classifier":
        from optimizer.tasks.classifier import ClassifierTask

        return ClassifierTask()
    if task == "detection":
        from optimizer.tasks.detection import DetectionTask

        # class ids as the scene counts them (1 = the first object class; YOLO's id + 1)
        top = max((int(c.max()) for c in data.classes if len(c)), default=0)
        if top >= len(classes):
            raise CliError(f"{flag}: labels hold YOLO class {top - 1}, the scene has "
                           f"{len(classes) - 1} object classes ({', '.join(classes[1:])})")
        try:
            return DetectionTask(len(classes) - 1, model=model or "yolo11n.yaml",
                                 freeze=int(freeze or 0), names=classes[1:])
        except (ValueError, FileNotFoundError) as exc:
            raise CliError(str(exc)) from exc
    from optimizer.tasks.segmentation import SegmentationTask

    if int(data.masks.max()) >= len(classes):
        raise CliError(f"{flag}: masks hold class {int(data.masks.max())}, the scene has "
                       f"classes 0..{len(classes) - 1} ({', '.join(classes)})")
    return SegmentationTask(len(classes))
