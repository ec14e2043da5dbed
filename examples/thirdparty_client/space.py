"""The parameter space, and the psi / latent layouts of section 4 ("Seeded sampling" too)."""

from __future__ import annotations

import numpy as np

from .frames import ClientError, check


def param_dim(p):
    kind = p["kind"]
    if kind == "normal":
        return len(p["mean"])
    if kind == "categorical":
        return len(p["choices"])
    if kind == "bernoulli":
        return 1
    raise ClientError(f"unknown parameter kind {kind!r} of {p.get('name')!r}")


def psi_size(space):
    return sum(2 * param_dim(p) if p["kind"] == "normal" else param_dim(p) for p in space["params"])


def latent_size(space):
    return sum(param_dim(p) if p["kind"] == "normal" else 1 for p in space["params"])


def _bernoulli_logit(p):
    # "The parameter space": a bernoulli's key is `logit`, one number.
    if "logit" not in p:
        raise ClientError(f"bernoulli {p['name']!r}: no 'logit' key in {sorted(p)}")
    return float(p["logit"])


def psi_from_space(space, *, overrides=None):
    """Flat psi in the section-4 layout: normal mean..log_std, categorical logits, bernoulli logit.

    ``overrides`` maps a parameter name to a dict like {"mean": [...], "log_std": [...]} or
    {"logits": [...]} / {"logit": x}.
    """
    overrides = overrides or {}
    out = []
    for p in space["params"]:
        o = overrides.get(p["name"], {})
        if p["kind"] == "normal":
            out += [float(x) for x in o.get("mean", p["mean"])]
            out += [float(x) for x in o.get("log_std", p["log_std"])]
        elif p["kind"] == "categorical":
            out += [float(x) for x in o.get("logits", p["logits"])]
        else:
            out.append(float(o.get("logit", _bernoulli_logit(p))))
    check(len(out) == psi_size(space), "psi length bookkeeping")
    return np.asarray(out, dtype=np.float64)


def unflatten_psi(space, psi):
    """Flat psi -> per-parameter dict (inverse of psi_from_space)."""
    out, i = {}, 0
    for p in space["params"]:
        d = param_dim(p)
        if p["kind"] == "normal":
            out[p["name"]] = {"mean": psi[i : i + d], "log_std": psi[i + d : i + 2 * d]}
            i += 2 * d
        elif p["kind"] == "categorical":
            out[p["name"]] = {"logits": psi[i : i + d]}
            i += d
        else:
            out[p["name"]] = {"logit": psi[i]}
            i += 1
    return out


def latent_row(space, values):
    """values: name -> list of floats (normal), choice name (categorical), bool (bernoulli)."""
    row = []
    for p in space["params"]:
        val = values[p["name"]]
        if p["kind"] == "normal":
            val = list(np.atleast_1d(val))
            check(len(val) == param_dim(p), f"{p['name']}: {len(val)} values")
            row += [float(x) for x in val]
        elif p["kind"] == "categorical":
            row.append(float(p["choices"].index(val)))
        else:
            row.append(1.0 if val else 0.0)
    return row


def named_from_row(space, row):
    """What the doc says latent_named holds for a flat latent row."""
    out, i = {}, 0
    for p in space["params"]:
        if p["kind"] == "normal":
            d = param_dim(p)
            # observed: a normal of dimension 1 is a bare float, d > 1 a list of floats
            vals = [float(x) for x in row[i : i + d]]
            out[p["name"]] = vals[0] if d == 1 else vals
            i += d
        elif p["kind"] == "categorical":
            out[p["name"]] = p["choices"][int(row[i])]
            i += 1
        else:
            out[p["name"]] = bool(row[i])
            i += 1
    return out


def sample_like_server(space, psi, n, seed):
    """The doc's "Seeded sampling" recipe, implemented independently."""
    rng = np.random.default_rng(seed)
    params = unflatten_psi(space, np.asarray(psi, dtype=np.float64))
    cols = []
    for p in space["params"]:
        q = params[p["name"]]
        if p["kind"] == "normal":
            d = param_dim(p)
            z = rng.standard_normal((n, d))
            cols.append(z * np.exp(q["log_std"]) + q["mean"])
        elif p["kind"] == "categorical":
            lg = np.asarray(q["logits"], dtype=np.float64)
            pr = np.exp(lg - lg.max())
            pr /= pr.sum()
            u = rng.random(n)
            cols.append(np.searchsorted(np.cumsum(pr), u, side="right")[:, None].astype(float))
        else:
            u = rng.random(n)
            cols.append((u < 1.0 / (1.0 + np.exp(-q["logit"])))[:, None].astype(float))
    return np.concatenate(cols, axis=1)


def latent_slots(space):
    """The parameter each latent slot belongs to."""
    out = []
    for p in space["params"]:
        out += [p] * (param_dim(p) if p["kind"] == "normal" else 1)
    return out


def first_slot(space, kind):
    """The first latent slot of a parameter of this kind."""
    return next(i for i, p in enumerate(latent_slots(space)) if p["kind"] == kind)


def psi_slots(space):
    """The role ("mean", "log_std", "logits", "logit") of each psi entry."""
    out = []
    for p in space["params"]:
        d = param_dim(p)
        out += (
            (["mean"] * d + ["log_std"] * d)
            if p["kind"] == "normal"
            else (["logits"] * d if p["kind"] == "categorical" else ["logit"])
        )
    return out
