"""The distributions a scene parameter can have: their psi, density, score and sampling.

One class per kind (normal, categorical, bernoulli); ParameterSpace (space.py) strings them
together. numpy + stdlib only: this module also runs inside Blender's bundled Python.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, InitVar, dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np

from protocol.numerics import _HALF_LOG_2PI, _log_prob_sigmoid, _softmax, _std_normal_ppf
from protocol.validation import SpaceError, _known, _num, _vec
from protocol.validation import strict_json_loads as strict_json_loads  # re-exported

LOG_STD_RANGE = (-10.0, 5.0)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _ParamBase:
    """Behaviour shared by the per-kind dataclasses (which own the fields)."""

    kind: ClassVar[str]
    name: str
    doc: str
    fixed: bool

    def _prefix(self, path: str) -> str:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise SpaceError(f"{path or 'param'}.name: must be an identifier-like string "
                             f"([A-Za-z_][A-Za-z0-9_]*), got {self.name!r}")
        pre = f"{path} ({self.name!r})" if path else f"param {self.name!r}"
        if not isinstance(self.doc, str):
            raise SpaceError(f"{pre}.doc: expected a string, got {type(self.doc).__name__}")
        if not isinstance(self.fixed, bool):
            raise SpaceError(f"{pre}.fixed: expected true/false, got {self.fixed!r}")
        self._check_active_if(pre)
        return pre

    def _check_active_if(self, pre: str) -> None:
        """{param: [values]}: this parameter reaches the render only when every named
        categorical (choice names) or bernoulli (true/false) takes one of the listed values.
        Checked against the other parameters by ParameterSpace."""
        cond = self.active_if
        if cond is None:
            return
        if not isinstance(cond, Mapping) or not cond:
            raise SpaceError(f"{pre}.active_if: expected a non-empty object "
                             f"{{parameter: [values]}}, got {cond!r}")
        out = {}
        for k, vals in cond.items():
            if not isinstance(k, str) or k == self.name:
                raise SpaceError(f"{pre}.active_if: keys must name other parameters, got {k!r}")
            if not isinstance(vals, list | tuple) or not vals:
                raise SpaceError(f"{pre}.active_if.{k}: expected a non-empty list of values, "
                                 f"got {vals!r}")
            out[k] = tuple(vals)
        object.__setattr__(self, "active_if", out)

    def active_columns(self, x: np.ndarray, values: Sequence[Any]) -> np.ndarray:
        """(n,) bool: latent block x (of THIS parameter) takes one of `values`."""
        raise SpaceError(f"param {self.name!r}: a {self.kind} cannot be an active_if condition "
                         f"(only categoricals and bernoullis)")

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """Latents from uniforms u (n, latent_size) in (0, 1): stratified sampling's inverse CDF."""
        raise NotImplementedError

    def psi_keys(self) -> dict[str, int | None]:
        """Named-psi keys in psi order, with their sizes (None: a scalar)."""
        raise NotImplementedError

    @property
    def psi_size(self) -> int:
        return sum(1 if s is None else s for s in self.psi_keys().values())

    @property
    def latent_size(self) -> int:
        return 1

    def psi_labels(self) -> list[str]:
        out = []
        for key, size in self.psi_keys().items():
            if size is None or size == 1:
                out.append(f"{self.name}.{key}")
            else:
                out += [f"{self.name}.{key}[{i}]" for i in range(size)]
        return out

    def unpack_theta(self, theta: np.ndarray) -> dict[str, Any]:
        """This parameter's part of psi -> its named form {key: list of floats or float}."""
        out, i = {}, 0
        for key, size in self.psi_keys().items():
            vals = [float(x) for x in theta[i:i + (size or 1)]]
            out[key], i = (vals[0] if size is None else vals), i + (size or 1)
        return out

    def theta(self, named: Mapping[str, Any] | None = None) -> np.ndarray:
        """This parameter's part of psi, from `named` (default: its own values)."""
        if named is None:
            named = {k: getattr(self, k) for k in self.psi_keys()}
        return np.concatenate([np.atleast_1d(np.asarray(named[k], dtype=np.float64))
                               for k in self.psi_keys()])

    def with_theta(self, theta: np.ndarray) -> Param:
        return replace(self, **self.unpack_theta(theta))  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if f.name in ("name", "doc", "fixed", "active_if") or v is None:
                continue
            d[f.name] = list(v) if isinstance(v, tuple) else v
        if self.active_if is not None:
            d["active_if"] = {k: list(v) for k, v in self.active_if.items()}
        d["doc"], d["fixed"] = self.doc, self.fixed
        return d

    def check_latent(self, x: np.ndarray, path: str) -> None:
        """Raise SpaceError if a column block of finite latents is outside the support."""


@dataclass(frozen=True)
class NormalParam(_ParamBase):
    """Diagonal Gaussian over d floats; low/high are renderer clip bounds, not in the density."""

    name: str
    mean: Sequence[float] | float
    log_std: Sequence[float] | float
    low: Sequence[float] | float | None = None
    high: Sequence[float] | float | None = None
    doc: str = ""
    fixed: bool = False
    active_if: Mapping[str, Sequence[Any]] | None = None
    _path: InitVar[str] = ""
    kind: ClassVar[str] = "normal"

    def __post_init__(self, _path: str) -> None:
        pre = self._prefix(_path)
        mean = _vec(self.mean, f"{pre}.mean")
        d, why = len(mean), " (one per mean component)"
        log_std = _vec(self.log_std, f"{pre}.log_std", d, why)
        lo_r, hi_r = LOG_STD_RANGE
        for i, v in enumerate(log_std):
            if not lo_r <= v <= hi_r:
                raise SpaceError(f"{pre}.log_std[{i}]: must be within [{lo_r:g}, {hi_r:g}], "
                                 f"got {v}")
        low = None if self.low is None else _vec(self.low, f"{pre}.low", d, why)
        high = None if self.high is None else _vec(self.high, f"{pre}.high", d, why)
        if low is not None and high is not None:
            for i in range(d):
                if not low[i] < high[i]:
                    raise SpaceError(f"{pre}.low[{i}]: must be < high[{i}], "
                                     f"got low={low[i]} high={high[i]}")
        for k, v in (("mean", mean), ("log_std", log_std), ("low", low), ("high", high)):
            object.__setattr__(self, k, v)

    @property
    def dim(self) -> int:
        return len(self.mean)  # type: ignore[arg-type]

    @property
    def latent_size(self) -> int:
        return self.dim

    def psi_keys(self) -> dict[str, int | None]:
        return {"mean": self.dim, "log_std": self.dim}

    def summary(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": [math.exp(v) for v in self.log_std]}

    def log_prob(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        mu, log_std = theta[: self.dim], theta[self.dim:]
        z = (x - mu) * np.exp(-log_std)
        return np.sum(-0.5 * z * z - log_std - _HALF_LOG_2PI, axis=1)

    def score(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        mu, log_std = theta[: self.dim], theta[self.dim:]
        z = (x - mu) * np.exp(-log_std)
        return np.concatenate([z * np.exp(-log_std), z * z - 1.0], axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        std = np.exp(np.asarray(self.log_std))
        return np.asarray(self.mean) + std * rng.standard_normal((n, self.dim))

    def quantile(self, u: np.ndarray) -> np.ndarray:
        z = _std_normal_ppf(u)
        return np.asarray(self.mean) + np.exp(np.asarray(self.log_std)) * z

    def unpack_latent(self, x: np.ndarray) -> float | list[float]:
        return float(x[0]) if self.dim == 1 else [float(v) for v in x]

    def pack_latent(self, v: Any, path: str) -> list[float]:
        return list(_vec(v, path, self.dim))

    def clip(self, v: Any, path: str) -> float | list[float]:
        x = np.array(_vec(v, path, self.dim))
        lo = -np.inf if self.low is None else np.asarray(self.low)
        hi = np.inf if self.high is None else np.asarray(self.high)
        return self.unpack_latent(np.clip(x, lo, hi))


@dataclass(frozen=True)
class CategoricalParam(_ParamBase):
    """softmax(logits) over named choices; the latent holds the choice index as a float."""

    name: str
    choices: Sequence[str]
    logits: Sequence[float]
    doc: str = ""
    fixed: bool = False
    active_if: Mapping[str, Sequence[Any]] | None = None
    _path: InitVar[str] = ""
    kind: ClassVar[str] = "categorical"

    def __post_init__(self, _path: str) -> None:
        pre = self._prefix(_path)
        if not isinstance(self.choices, list | tuple) or len(self.choices) < 2:
            raise SpaceError(f"{pre}.choices: expected a list of at least 2 strings, "
                             f"got {self.choices!r}")
        for i, c in enumerate(self.choices):
            if not isinstance(c, str) or not c:
                raise SpaceError(f"{pre}.choices[{i}]: expected a non-empty string, got {c!r}")
            if c in self.choices[:i]:
                raise SpaceError(f"{pre}.choices[{i}]: duplicate choice {c!r}")
        logits = _vec(self.logits, f"{pre}.logits", len(self.choices), " (one per choice)")
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "logits", logits)

    def psi_keys(self) -> dict[str, int | None]:
        return {"logits": len(self.choices)}

    def psi_labels(self) -> list[str]:
        return [f"{self.name}.logit[{c}]" for c in self.choices]

    def summary(self) -> dict[str, Any]:
        p = _softmax(np.asarray(self.logits))
        return {"probs": {c: float(v) for c, v in zip(self.choices, p)}}

    def log_prob(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        m = np.max(theta)
        return theta[x[:, 0].astype(np.intp)] - (m + np.log(np.sum(np.exp(theta - m))))

    def score(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        return np.eye(len(theta))[x[:, 0].astype(np.intp)] - _softmax(theta)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.quantile(rng.random(n)[:, None])

    def quantile(self, u: np.ndarray) -> np.ndarray:
        cdf = np.cumsum(_softmax(np.asarray(self.logits)))
        cdf[-1] = 1.0
        return np.searchsorted(cdf, u[:, 0], side="right").astype(np.float64)[:, None]

    def active_columns(self, x: np.ndarray, values: Sequence[Any]) -> np.ndarray:
        return np.isin(x[:, 0], [float(self.choices.index(v)) for v in values])

    def check_latent(self, x: np.ndarray, path: str) -> None:
        k = len(self.choices)
        bad = np.flatnonzero((x[:, 0] != np.round(x[:, 0])) | (x[:, 0] < 0) | (x[:, 0] >= k))
        if bad.size:
            raise SpaceError(f"{path}[{bad[0]}] ({self.name!r}): category index must be an "
                             f"integer in 0..{k - 1}, got {x[bad[0], 0]}")

    def unpack_latent(self, x: np.ndarray) -> str:
        return self.choices[int(x[0])]

    def pack_latent(self, v: Any, path: str) -> list[float]:
        if isinstance(v, str):
            if v not in self.choices:
                raise SpaceError(f"{path}: unknown choice {v!r} (known: {list(self.choices)})")
            return [float(self.choices.index(v))]
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise SpaceError(f"{path}: expected a choice name or index, got {v!r}")
        return [float(v)]


@dataclass(frozen=True)
class BernoulliParam(_ParamBase):
    """An on/off switch with p = sigmoid(logit); the latent is 0.0 or 1.0."""

    name: str
    logit: float
    doc: str = ""
    fixed: bool = False
    active_if: Mapping[str, Sequence[Any]] | None = None
    _path: InitVar[str] = ""
    kind: ClassVar[str] = "bernoulli"

    def __post_init__(self, _path: str) -> None:
        object.__setattr__(self, "logit", _num(self.logit, f"{self._prefix(_path)}.logit"))

    def psi_keys(self) -> dict[str, int | None]:
        return {"logit": None}

    def summary(self) -> dict[str, Any]:
        return {"p": float(np.exp(_log_prob_sigmoid(self.logit)))}

    def log_prob(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        b = x[:, 0]
        return b * _log_prob_sigmoid(theta[0]) + (1.0 - b) * _log_prob_sigmoid(-theta[0])

    def score(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        return (x[:, 0] - np.exp(_log_prob_sigmoid(theta[0])))[:, None]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.quantile(rng.random(n)[:, None])

    def quantile(self, u: np.ndarray) -> np.ndarray:
        p = np.exp(_log_prob_sigmoid(self.logit))
        return (u[:, :1] < p).astype(np.float64)

    def active_columns(self, x: np.ndarray, values: Sequence[Any]) -> np.ndarray:
        return np.isin(x[:, 0], [float(v) for v in values])

    def check_latent(self, x: np.ndarray, path: str) -> None:
        bad = np.flatnonzero((x[:, 0] != 0.0) & (x[:, 0] != 1.0))
        if bad.size:
            raise SpaceError(f"{path}[{bad[0]}] ({self.name!r}): must be 0 or 1, "
                             f"got {x[bad[0], 0]}")

    def unpack_latent(self, x: np.ndarray) -> bool:
        return bool(x[0] == 1.0)

    def pack_latent(self, v: Any, path: str) -> list[float]:
        if isinstance(v, bool | np.bool_) or (
                isinstance(v, int | float | np.integer | np.floating) and v in (0, 1)):
            return [float(v)]
        raise SpaceError(f"{path}: expected true/false (or 0/1), got {v!r}")


Param = NormalParam | CategoricalParam | BernoulliParam
PARAM_KINDS: dict[str, type[Param]] = {c.kind: c for c in (NormalParam, CategoricalParam,
                                                           BernoulliParam)}


def _param_from_dict(d: Any, path: str) -> Param:
    if not isinstance(d, Mapping):
        raise SpaceError(f"{path}: expected an object, got {type(d).__name__}")
    where = f"{path} ({d['name']!r})" if isinstance(d.get("name"), str) else path
    if "kind" not in d:
        raise SpaceError(f"{where}.kind: missing required field")
    cls = PARAM_KINDS.get(d["kind"]) if isinstance(d["kind"], str) else None
    if cls is None:
        raise SpaceError(f"{where}.kind: unknown kind {d['kind']!r} (known: "
                         f"{_known(sorted(PARAM_KINDS))})")
    fs = [f for f in fields(cls) if not f.name.startswith("_")]
    allowed = ["kind"] + [f.name for f in fs]
    for k in d:
        if k not in allowed:
            raise SpaceError(f"{where}.{k}: unknown key for kind {cls.kind!r} "
                             f"(allowed: {_known(allowed)})")
    for f in fs:
        if f.name not in d and f.default is MISSING:
            raise SpaceError(f"{where}.{f.name}: missing required field")
    return cls(**{k: v for k, v in d.items() if k != "kind"}, _path=path)
