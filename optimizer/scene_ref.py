"""Which scene a command works on (--scene or --blend, with --task), and what is known of it
before any server starts: its defaults come from its description, never from its name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from optimizer.errors import CliError
from protocol.bindings import SceneError
from protocol.scene_defaults import TASKS, SceneDefaults

BLEND = "blend"  # the scene key of a user's bound .blend: its defaults arrive in hello
TOY = "toy"      # the in-process Gaussian-mixture toy (no Blender)


def builtin_names() -> tuple[str, ...]:
    from blender_addon.scenes import SCENE_NAMES

    return (TOY, *SCENE_NAMES)


@dataclass(frozen=True)
class SceneRef:
    """A checked scene choice. `task` is the --task flag (None: the scene's own)."""

    scene: str
    blend: str | None = None
    task: str | None = None

    @classmethod
    def from_flags(cls, scene: str | None, blend: str | None = None,
                   task: str | None = None, *, rendered: bool = False) -> SceneRef:
        """--scene/--blend/--task; `rendered`: the command needs images (not the toy)."""
        if task is not None and task not in TASKS:
            raise CliError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        if blend:
            path = Path(blend)
            if not path.is_file():
                raise CliError(f"--blend {blend}: no such file")
            if path.suffix.lower() != ".blend":
                raise CliError(f"--blend {blend}: expected a .blend file")
            if task == "classifier":
                raise CliError("--blend renders images: --task segmentation or detection")
            return cls(BLEND, str(path.resolve()), task)
        known = builtin_names()[1:] if rendered else builtin_names()
        if scene not in known:
            raise CliError(f"unknown scene {scene!r}; known: {', '.join(known)}")
        ref = cls(scene, None, task)
        own = ref.defaults().task
        if task and own and task != own:
            raise CliError(f"scene {scene!r} trains a {own} model, not --task {task}")
        return ref

    @property
    def label(self) -> str:
        return Path(self.blend).stem if self.blend else self.scene

    def defaults(self) -> SceneDefaults:
        """The scene's own defaults as far as known without a server: the toy's and each
        example's are bpy-free files; a .blend's arrive with the server's hello."""
        if self.scene == TOY:
            from optimizer.simulators.toy import TOY_DEFAULTS

            return TOY_DEFAULTS
        if self.scene == BLEND:
            return SceneDefaults()
        from blender_addon.scenes import defaults

        return defaults(self.scene)

    def known_task(self) -> str | None:
        """The task, when known before a server starts (a .blend without --task: not yet)."""
        if self.scene == BLEND and self.task is None:
            return None
        return self.defaults().task_or(self.task)

    def task_given(self, defaults: SceneDefaults) -> str:
        """The task with the defaults a server reported (its description)."""
        try:
            return defaults.task_or(self.task)
        except SceneError as exc:
            raise CliError(str(exc)) from None
