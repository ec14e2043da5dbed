"""Named scene parameters and their distributions q_psi(s); psi <-> one flat vector.

The optimizer learns psi by score-function gradients, so `score` (d/dpsi log q_psi(s)) is exact
and closed-form. numpy + stdlib only: this module also runs inside Blender's bundled Python.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from protocol.distributions import (  # noqa: F401  (re-exported: the public API lives here)
    LOG_STD_RANGE,
    PARAM_KINDS,
    BernoulliParam,
    CategoricalParam,
    NormalParam,
    Param,
    SpaceError,
    _known,
    _num,
    _param_from_dict,
    _vec,
    strict_json_loads,
)

FORMAT = "autosim.space"
VERSION = 1


class ParameterSpace:
    """An ordered set of named parameters; psi is their unconstrained parameters, flattened."""

    def __init__(self, params: Sequence[Param], name: str = "",
                 presets: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        if not isinstance(name, str):
            raise SpaceError(f"name: expected a string, got {type(name).__name__}")
        self._params: tuple[Param, ...] = tuple(params)
        self._name = name
        self._psi_slices: dict[str, slice] = {}
        self._latent_slices: dict[str, slice] = {}
        pi = li = 0
        for i, p in enumerate(self._params):
            if not isinstance(p, NormalParam | CategoricalParam | BernoulliParam):
                raise SpaceError(f"params[{i}]: expected a parameter, got {type(p).__name__}")
            if p.name in self._psi_slices:
                j = self.names.index(p.name)
                raise SpaceError(f"params[{i}].name: duplicate name {p.name!r} (params[{j}])")
            self._psi_slices[p.name] = slice(pi, pi + p.psi_size)
            self._latent_slices[p.name] = slice(li, li + p.latent_size)
            pi, li = pi + p.psi_size, li + p.latent_size
        self._psi = np.concatenate([p.theta() for p in self._params] or [np.zeros(0)])
        self._labels = [lab for p in self._params for lab in p.psi_labels()]
        self._latent_labels = [p.name for p in self._params for _ in range(p.latent_size)]
        self._log_std_idx = np.array([i for i, lab in enumerate(self._labels)
                                      if ".log_std" in lab], dtype=np.intp)
        self._check_conditions()
        if presets is not None and not isinstance(presets, Mapping):
            raise SpaceError(f"presets: expected an object, got {type(presets).__name__}")
        self._presets: dict[str, dict[str, dict[str, Any]]] = {}
        for pname, named in (presets or {}).items():
            if not isinstance(pname, str) or not pname:
                raise SpaceError(f"presets: preset names must be non-empty strings, got {pname!r}")
            self._presets[pname] = self._parse_named(named, f"presets.{pname}")
            self._check_psi(self._pack(self._presets[pname], self._psi), f"presets.{pname}")

    def _check_conditions(self) -> None:
        for i, p in enumerate(self._params):
            for k, vals in (p.active_if or {}).items():
                pre = f"params[{i}] ({p.name!r}).active_if.{k}"
                if k not in self._psi_slices:
                    raise SpaceError(f"{pre}: unknown parameter (known: {_known(self.names)})")
                q = self._param(k)
                if q.active_if is not None:
                    raise SpaceError(f"{pre}: {k!r} is itself conditional (active_if); a "
                                     f"condition must name an unconditional parameter")
                if isinstance(q, CategoricalParam):
                    bad = [v for v in vals if v not in q.choices]
                    if bad:
                        raise SpaceError(f"{pre}: unknown choice {bad[0]!r} (known: "
                                         f"{_known(list(q.choices))})")
                elif isinstance(q, BernoulliParam):
                    bad = [v for v in vals if not isinstance(v, bool)]
                    if bad:
                        raise SpaceError(f"{pre}: expected true/false, got {bad[0]!r}")
                else:
                    raise SpaceError(f"{pre}: a condition must be a categorical or bernoulli "
                                     f"parameter, {k!r} is {q.kind}")

    # ---- read-only views (copies, so callers cannot alter the space) ------------------------
    @property
    def params(self) -> tuple[Param, ...]:
        return self._params

    @property
    def name(self) -> str:
        return self._name

    @property
    def psi_dim(self) -> int:
        return len(self._psi)

    @property
    def latent_dim(self) -> int:
        return len(self._latent_labels)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._params]

    @property
    def psi_slices(self) -> dict[str, slice]:
        return dict(self._psi_slices)

    @property
    def latent_slices(self) -> dict[str, slice]:
        return dict(self._latent_slices)

    @property
    def psi_labels(self) -> list[str]:
        """One label per psi entry, e.g. 'location.mean[1]' or 'material.logit[metal]'."""
        return list(self._labels)

    @property
    def presets(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Preset name -> (partial) named psi; a copy, so callers cannot alter the space."""
        return copy.deepcopy(self._presets)

    @property
    def free_mask(self) -> np.ndarray:
        """True on psi entries the optimizer may change (those of non-fixed params)."""
        return np.array([not p.fixed for p in self._params for _ in range(p.psi_size)], dtype=bool)

    @property
    def psi(self) -> np.ndarray:
        """A copy of the current flat psi (float64)."""
        return self._psi.copy()

    def __repr__(self) -> str:
        return f"ParameterSpace(name={self._name!r}, params={self.names}, psi_dim={self.psi_dim})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParameterSpace) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def _param(self, name: str) -> Param:
        if name not in self._psi_slices:
            raise SpaceError(f"unknown parameter {name!r} (known: {_known(self.names)})")
        return self._params[self.names.index(name)]

    # ---- psi --------------------------------------------------------------------------------
    def _check_psi(self, psi: ArrayLike, path: str = "psi", ranges: bool = True) -> np.ndarray:
        try:
            a = np.array(psi, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise SpaceError(f"{path}: expected {self.psi_dim} numbers ({e})") from None
        if a.shape != (self.psi_dim,):
            raise SpaceError(f"{path}: expected shape ({self.psi_dim},), got {a.shape}")
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            i = bad[0]
            raise SpaceError(f"{path}[{i}] ({self._labels[i]}): must be finite, got {a[i]}")
        lo, hi = LOG_STD_RANGE
        ls = a[self._log_std_idx]
        bad = self._log_std_idx[(ls < lo) | (ls > hi)]
        if ranges and bad.size:
            i = bad[0]
            raise SpaceError(f"{path}[{i}] ({self._labels[i]}): must be within "
                             f"[{lo:g}, {hi:g}], got {a[i]}")
        return a

    def _theta(self, psi: ArrayLike | None) -> np.ndarray:
        return self._psi if psi is None else self._check_psi(psi, ranges=False)

    def with_psi(self, psi: ArrayLike) -> ParameterSpace:
        """The same space at another psi (validated: shape, finite, log_std range)."""
        a = self._check_psi(psi)
        params = [p.with_theta(a[self._psi_slices[p.name]]) for p in self._params]
        return ParameterSpace(params, self._name, self._presets)

    def with_fixed(self, name: str, fixed: bool) -> ParameterSpace:
        """The same space with one parameter frozen (fixed=True) or freed for the optimizer."""
        target = self._param(name)
        params = [replace(p, fixed=fixed) if p is target else p for p in self._params]
        return ParameterSpace(params, self._name, self._presets)

    def unpack_psi(self, psi: ArrayLike | None = None) -> dict[str, dict[str, Any]]:
        """Flat psi -> {param: {key: list or float}}, the form presets and UIs use."""
        theta = self._theta(psi)
        return {p.name: p.unpack_theta(theta[self._psi_slices[p.name]]) for p in self._params}

    def _parse_named(self, named: Any, path: str) -> dict[str, dict[str, Any]]:
        if not isinstance(named, Mapping):
            raise SpaceError(f"{path}: expected an object, got {type(named).__name__}")
        out: dict[str, dict[str, Any]] = {}
        for pname, entry in named.items():
            if pname not in self._psi_slices:
                raise SpaceError(f"{path}.{pname}: unknown parameter (known: "
                                 f"{_known(self.names)})")
            keys = self._param(pname).psi_keys()
            if not isinstance(entry, Mapping):
                raise SpaceError(f"{path}.{pname}: expected an object with keys {list(keys)}")
            out[pname] = {}
            for key, v in entry.items():
                if key not in keys:
                    raise SpaceError(f"{path}.{pname}.{key}: unknown key (allowed: "
                                     f"{_known(list(keys))})")
                size, kp = keys[key], f"{path}.{pname}.{key}"
                out[pname][key] = _num(v, kp) if size is None else list(_vec(v, kp, size))
        return out

    def _pack(self, parsed: Mapping[str, Mapping[str, Any]], base: np.ndarray) -> np.ndarray:
        out = base.copy()
        for pname, entry in parsed.items():
            p, sl = self._param(pname), self._psi_slices[pname]
            out[sl] = p.theta({**p.unpack_theta(out[sl]), **entry})
        return out

    def pack_psi(self, named: Mapping[str, Mapping[str, Any]],
                 base: ArrayLike | None = None) -> np.ndarray:
        """Named psi -> flat psi; params or keys left out keep `base` (default: current psi)."""
        base_a = self._psi if base is None else self._check_psi(base, "base", ranges=False)
        return self._pack(self._parse_named(named, "named"), base_a)

    def preset(self, name: str) -> ParameterSpace:
        """The space at a stored preset psi (e.g. 'validation')."""
        if name not in self._presets:
            raise SpaceError(f"unknown preset {name!r} (known: {_known(list(self._presets))})")
        return self.with_psi(self._pack(self._presets[name], self._psi))

    # ---- latents ------------------------------------------------------------------------------
    def validate_latents(self, latents: ArrayLike) -> np.ndarray:
        """(latent_dim,) or (n, latent_dim) -> a checked (n, latent_dim) float64 copy."""
        try:
            a = np.array(latents, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise SpaceError(f"latents: expected an array of numbers ({e})") from None
        if a.ndim == 1 and a.shape[0] == self.latent_dim:
            a = a[None, :]
        if a.ndim != 2 or a.shape[1] != self.latent_dim:
            raise SpaceError(f"latents: expected shape ({self.latent_dim},) or "
                             f"(n, {self.latent_dim}), got {a.shape}")
        bad = np.argwhere(~np.isfinite(a))
        if bad.size:
            r, c = bad[0]
            raise SpaceError(f"latents[{r}, {c}] ({self._latent_labels[c]!r}): must be finite, "
                             f"got {a[r, c]}")
        for p in self._params:
            p.check_latent(a[:, self._latent_slices[p.name]], "latents")
        return a

    def sample(self, n: int, rng: np.random.Generator, stratified: bool = False,
               antithetic: bool = False, paired: bool = False) -> np.ndarray:
        """n latents from q_psi as an (n, latent_dim) float64 array; rng makes it reproducible.

        stratified: Latin hypercube sampling. Each latent column's n uniforms fall one in each
        of n equal strata (in an independent random order per column), pushed through the
        inverse CDF: every row is still an exact draw from q_psi (so sample means stay
        unbiased), but a categorical's choice counts are within one of n * p and a normal's
        draws cover its quantiles evenly, which cuts the variance of score-function averages.

        antithetic: rows come in pairs (2i, 2i + 1) that share every column but the free
        normals', which the second row mirrors about the mean (uniform u and 1 - u). Every row
        is still an exact draw; within a pair only the free normals differ, so a score-function
        average sees their effect as a difference of two renders (a score-function estimate
        over pairs needs a baseline that leaves the pair out). n must be even.

        paired: rows come in pairs that share the fixed parameters' columns (what psi does
        not move: in clevr the objects' places, shapes and colour) and draw every free column
        afresh. A row's partner is then independent of the row's own free draws, so its value is
        an unbiased baseline for every score term, and one rendered from the same layout: the
        layout's share of a render's variation cancels (common random numbers). n must be even.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected numpy.random.Generator, got {type(rng).__name__}")
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise SpaceError(f"n: expected an integer >= 0, got {n!r}")
        n = int(n)
        if not (stratified or antithetic or paired):
            return np.concatenate([p.sample(n, rng) for p in self._params]
                                  or [np.zeros((n, 0))], axis=1)
        if antithetic and paired:
            raise SpaceError("antithetic and paired sampling are two ways to pair rows; "
                             "choose one")
        if (antithetic or paired) and n % 2:
            raise SpaceError(f"n: {'antithetic' if antithetic else 'paired'} sampling draws "
                             f"pairs, got an odd n = {n}")
        u = self._uniforms(n // 2 if antithetic or paired else n, rng, stratified)
        if antithetic or paired:
            u = self._pairs(u, rng, stratified) if paired else self._with_mirrors(u)
        return np.concatenate([p.quantile(u[:, self._latent_slices[p.name]])
                               for p in self._params] or [np.zeros((n, 0))], axis=1)

    def _with_mirrors(self, u: np.ndarray) -> np.ndarray:
        """(2m, latent_dim): each row of u followed by its mirror (free normals at 1 - u)."""
        mirrored = u.copy()
        for p in self._params:
            if p.kind == "normal" and not p.fixed:
                cols = self._latent_slices[p.name]
                mirrored[:, cols] = 1.0 - u[:, cols]
        return np.stack([u, mirrored], axis=1).reshape(2 * len(u), self.latent_dim)

    def _pairs(self, u: np.ndarray, rng: np.random.Generator, stratified: bool) -> np.ndarray:
        """(2m, latent_dim): each row of u followed by a partner that shares its fixed
        columns and draws the free ones from fresh uniforms."""
        partner = self._uniforms(len(u), rng, stratified)
        for p in self._params:
            if p.fixed:
                cols = self._latent_slices[p.name]
                partner[:, cols] = u[:, cols]
        return np.stack([u, partner], axis=1).reshape(2 * len(u), self.latent_dim)

    def _uniforms(self, n: int, rng: np.random.Generator, stratified: bool) -> np.ndarray:
        """(n, latent_dim) uniforms in (0, 1); stratified: one per stratum, shuffled per column."""
        if not stratified:
            return rng.random((n, self.latent_dim))
        strata = np.argsort(rng.random((n, self.latent_dim)), axis=0)  # a permutation per column
        return (strata + rng.random((n, self.latent_dim))) / max(n, 1)

    def active(self, latents: ArrayLike) -> np.ndarray:
        """(n, n_params) bool: which parameters reach each latent's render (active_if)."""
        x = self.validate_latents(latents)
        out = np.ones((x.shape[0], len(self._params)), dtype=bool)
        for i, p in enumerate(self._params):
            for k, vals in (p.active_if or {}).items():
                out[:, i] &= self._param(k).active_columns(x[:, self._latent_slices[k]], vals)
        return out

    def log_prob(self, latents: ArrayLike, psi: ArrayLike | None = None) -> np.ndarray:
        """log q_psi(s) per row, (n,); psi=None: current psi (else checked: shape, finite)."""
        x, theta = self.validate_latents(latents), self._theta(psi)
        out = np.zeros(x.shape[0])
        for p in self._params:
            out += p.log_prob(x[:, self._latent_slices[p.name]], theta[self._psi_slices[p.name]])
        return out

    def score(self, latents: ArrayLike, psi: ArrayLike | None = None,
              active_only: bool = False) -> np.ndarray:
        """Exact d/dpsi log q_psi(s) per row, (n, psi_dim); fixed params included (mask them).

        active_only: zero the score of parameters a latent's render does not use (active_if).
        Those terms are zero-mean noise in a score-function estimate, E[f(s) score_j] = 0 when
        f does not depend on s_j and s_j is independent of the condition, so dropping them is
        Rao-Blackwellisation: same expectation, less variance.
        """
        x, theta = self.validate_latents(latents), self._theta(psi)
        out = np.zeros((x.shape[0], self.psi_dim))
        act = self.active(x) if active_only else None
        for i, p in enumerate(self._params):
            ps = self._psi_slices[p.name]
            out[:, ps] = p.score(x[:, self._latent_slices[p.name]], theta[ps])
            if act is not None:
                out[~act[:, i], ps] = 0.0
        return out

    def unpack_latent(self, row: ArrayLike) -> dict[str, Any]:
        """One latent -> {name: float | list[float] | choice name | bool}, for renderers/UIs."""
        a = self.validate_latents(row)
        if a.shape[0] != 1:
            raise SpaceError(f"latents: expected one row, got {a.shape[0]}")
        return {p.name: p.unpack_latent(a[0, self._latent_slices[p.name]]) for p in self._params}

    def pack_latent(self, named: Mapping[str, Any]) -> np.ndarray:
        """Inverse of unpack_latent (categoricals as choice name or index); every param needed."""
        if not isinstance(named, Mapping):
            raise SpaceError(f"latent: expected an object, got {type(named).__name__}")
        for k in named:
            self._param(k)
        missing = [n for n in self.names if n not in named]
        if missing:
            raise SpaceError(f"latent: missing parameters {missing}")
        row = [x for p in self._params for x in p.pack_latent(named[p.name], f"latent.{p.name}")]
        return self.validate_latents(np.array(row, dtype=np.float64))[0]

    def clip_latent(self, named: Mapping[str, Any]) -> dict[str, Any]:
        """Apply the normal params' low/high bounds to an unpacked latent, as the renderer does."""
        out = dict(named)
        for k, v in named.items():
            p = self._param(k)
            if isinstance(p, NormalParam):
                out[k] = p.clip(v, f"latent.{k}")
        return out

    # ---- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; from_dict(to_dict()) reproduces the space exactly."""
        return {"format": FORMAT, "version": VERSION, "name": self._name,
                "params": [p.to_dict() for p in self._params], "presets": self.presets}

    @classmethod
    def from_dict(cls, d: Any) -> ParameterSpace:
        """Build a space from its dict form, validating everything (SpaceError names the path)."""
        if not isinstance(d, Mapping):
            raise SpaceError(f"space: expected an object, got {type(d).__name__}")
        allowed = ("format", "version", "name", "params", "presets")
        for k in d:
            if k not in allowed:
                raise SpaceError(f"{k}: unknown key (allowed: {_known(allowed)})")
        if d.get("format") != FORMAT:
            raise SpaceError(f"format: expected {FORMAT!r}, got {d.get('format')!r}")
        v = d.get("version")
        if isinstance(v, bool) or v != VERSION:
            raise SpaceError(f"version: expected {VERSION}, got {v!r}")
        if "params" not in d:
            raise SpaceError("params: missing required field")
        if not isinstance(d["params"], list):
            raise SpaceError(f"params: expected a list, got {type(d.get('params')).__name__}")
        params = [_param_from_dict(p, f"params[{i}]") for i, p in enumerate(d["params"])]
        return cls(params, d.get("name", ""), d.get("presets"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ParameterSpace:
        """Parse and validate; NaN/Infinity literals and malformed JSON raise SpaceError."""
        return cls.from_dict(strict_json_loads(text, SpaceError))
