"""One `render` request, checked and carried out: bpy-free, the server only keeps the books.

Every check happens before the first image is rendered, so a bad request costs an error reply
and no render (docs/protocol.md, section 4: `render`).
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from protocol.space import ParameterSpace, SpaceError

RETURNABLE = ("image", "mask", "instances", "boxes")


class RequestError(Exception):
    """A request that decoded but asks for something this server can't do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass
class RenderJob:
    width: int
    height: int
    wanted: list[str]
    latents: np.ndarray
    seed: int | None

    @classmethod
    def parse(cls, f: dict[str, Any], space: ParameterSpace, lim: Any,
              generation: int) -> RenderJob:
        """The request's fields checked against the space and the server's limits."""
        width = _int_in(f, "width", lim.default_width, 1, lim.max_side)
        height = _int_in(f, "height", lim.default_height, 1, lim.max_side)
        wanted = f.get("return", list(RETURNABLE))
        unknown = sorted(set(wanted) - set(RETURNABLE))
        if unknown:
            raise RequestError("bad_value", f"return: unknown {unknown}; allowed {RETURNABLE}")
        asked = f.get("generation")
        if asked is not None and asked != generation:
            raise RequestError(
                "stale_generation",
                f"request made under psi generation {asked}, server is at "
                f"{generation}: fetch get_params first",
            )
        if "latents" in f:
            shape = np.shape(f["latents"])  # (K, L'): the request schema takes 2-D latents only
            if shape[1] != space.latent_dim:
                raise RequestError("bad_value", f"latents: expected shape (K, "
                                   f"{space.latent_dim}), got {tuple(shape)}")
            try:
                latents = space.validate_latents(f["latents"])
            except SpaceError as exc:  # its messages start with "latents"
                raise RequestError("bad_value", str(exc)) from exc
            seed = None
        else:
            n = _int_in(f, "n", 1, 1, lim.max_n)
            seed = int(f["seed"])
            latents = space.sample(n, np.random.default_rng(seed))
        n = len(latents)
        if n == 0 or n > lim.max_n:
            raise RequestError("bad_value", f"latents: need 1..{lim.max_n} rows, got {n}")
        if n * width * height > lim.max_pixels_per_request:
            raise RequestError(
                "bad_value",
                f"request of {n} x {width}x{height} px exceeds "
                f"{lim.max_pixels_per_request} pixels; split it",
            )
        return cls(width, height, list(wanted), latents, seed)

    def run(self, space: ParameterSpace, backend: Any, log: Callable[[str], None],
            item_id: Callable[[], str], generation: int,
            rendered_one: Callable[[], None]) -> list[dict[str, Any]]:
        """Render every row; a failing one is render_failed naming the item."""
        items = []
        n = len(self.latents)
        for index, row in enumerate(self.latents):
            named = space.unpack_latent(row)
            try:
                result = backend.render(space.clip_latent(named), self.width, self.height)
            except Exception as exc:
                log(traceback.format_exc())
                raise RequestError(
                    "render_failed", f"item {index} of {n}: {type(exc).__name__}: {exc}"
                ) from exc
            item = {
                "item_id": item_id(),
                "index": index,
                "seed": self.seed,
                "generation": generation,
                "latent": row.tolist(),
                "latent_named": named,  # unpack_latent gives JSON-native values
                "render_s": float(result.render_s),
                "extract_s": float(getattr(result, "extract_s", 0.0)),
                "width": self.width,
                "height": self.height,
            }
            for key in self.wanted:
                item[key] = getattr(result, key)
            if "boxes" in self.wanted:
                item["classes"] = result.classes
            items.append(item)
            rendered_one()
        return items


def _int_in(fields: dict, key: str, default: int, low: int, high: int) -> int:
    value = fields.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError("bad_value",
                           f"{key}: must be an integer in [{low}, {high}], got {value!r}")
    return value
