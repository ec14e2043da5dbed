"""AutoSimulate (Behl et al. 2020, Algorithm 1): a local quadratic model of the bilevel problem.

Each step: sample K latents from q_psi and render them; fine-tune theta for epsilon epochs on
them (theta kept across steps); solve (H + lambda I) v = g_val by warm-started CG on
Hessian-vector products (BatchNorm frozen); hypergradient = -(1/K) sum_k score_k (grad l_k . v);
an Adam step on the free entries of psi; publish psi to the render servers.
"""

from __future__ import annotations

import collections
import time
import warnings
from typing import Any

import numpy as np
import torch

from optimizer.algorithms.base import Algorithm, Context, clamp_psi, register
from optimizer.hypergrad import APPROXIMATIONS, CGSettings, hypergradient
from optimizer.psi_optim import EvidenceGate, NaturalStep, make_psi_optimizer
from optimizer.tasks.base import TaskData
from optimizer.training import fit

SAMPLINGS = ("iid", "stratified", "antithetic", "paired")
PAIRED = ("antithetic", "paired")  # samplings that render K / 2 pairs


@register
class AutoSimulate(Algorithm):
    name = "autosimulate"
    defaults: dict[str, Any] = {
        "approx": "quadratic",   # quadratic | approx_quadratic | linear | no_val (Table 1)
        "k": 16,                 # latents rendered per step
        "epochs": 2,             # epsilon: fine-tuning passes over the K new samples
        "batch_size": 8,
        "lr_theta": 3e-3,
        "lr_psi": 0.05,
        "damping": 0.1,          # lambda in (H + lambda I): Levenberg damping (paper sec. 4.2)
        "cg_iters": 5,
        "cg_rtol": 1e-3,
        "hessian": "head",       # head | all: which parameters theta the local model moves
        "hessian_subsample": 0,  # 0 = all K samples in the Hessian
        "val_batch": 0,          # 0 = the whole validation set for g_val
        "baseline": "loo",
        # Iterations that only fine-tune theta before psi moves. Eqs. 7-9 assume theta is near
        # theta*(psi); a detector trained from scratch is far from it for its first few hundred
        # steps (mAP 0), and hypergradients taken there are noise that psi would carry.
        "warmup": 0,
        # Reuse the samples of the last `replay` iterations in the hypergradient, their
        # directional derivatives taken at the current theta and v, self-normalised importance
        # weights q_psi(s) / q_psi_then(s) (0: the paper's estimator, this step's K only).
        # Measured on the toy (bench/diagnose.py): at theta near theta*(psi) the expectation of
        # eqs. 11-13 agrees with the bilevel gradient (cosine 0.94) but K = 64 samples of it
        # agree with that expectation only at cosine 0.1-0.3; K = 1,024 reaches ~0.8.
        "replay": 0,
        # paper: fine-tune theta on the K new samples, then take the hypergradient on them
        # (Algorithm 1). fresh: the hypergradient first, on samples theta has not been trained
        # on, then fine-tune: eq. 11's expectation over q_psi estimated out of sample.
        "order": "paper",
        # the K directional derivatives divided by the samples' gradient norms (a cosine
        # with v): see hypergrad.hypergradient
        "normalise": False,
        # iid | stratified: Latin hypercube latents (space.sample): every row an exact draw
        # from q_psi, choice counts within one of K * p, normals spread over their quantiles
        # | antithetic: K / 2 pairs sharing all but the free normals, which are mirrored about
        # their means: the normals' score terms become differences of two renders | paired:
        # K / 2 pairs sharing the fixed parameters (clevr: the objects' layout), every free
        # one drawn per row; each row's partner is its baseline, and the layout's share of the
        # variation cancels (space.sample, hypergrad.score_terms)
        "sampling": "iid",
        # drop the score terms of parameters a sample's render does not use (the space's
        # active_if): unbiased (Rao-Blackwellised), less variance
        "active_only": False,
        # adam (the paper's) | natural: psi_optim.NaturalStep, steps bounded in KL(q_old||q_new)
        "psi_optimizer": "adam",
        "kl_step": 0.05,         # natural: the KL a step makes when recent gradients agree
        "psi_momentum": 0.9,     # natural: decay of its gradient averages
        # c > 0: scale each entry's psi step by max(0, 1 - c Var(m) / m^2), m the average
        # hypergradient (psi_optim.EvidenceGate); 0: off
        "shrink": 0.0,
    }

    def __init__(self, ctx: Context, **options: Any) -> None:
        super().__init__(ctx, **options)
        o = self.options
        if o["approx"] not in APPROXIMATIONS:
            raise ValueError(f"unknown approximation {o['approx']!r}; known: "
                             f"{', '.join(APPROXIMATIONS)}")
        if o["hessian"] not in ("head", "all"):
            raise ValueError(f"hessian must be 'head' or 'all', got {o['hessian']!r}")
        if int(o["k"]) < 2:
            raise ValueError(f"k must be at least 2, got {o['k']}")
        if int(o["warmup"]) < 0:
            raise ValueError(f"warmup must be >= 0, got {o['warmup']}")
        if o["order"] not in ("paper", "fresh"):
            raise ValueError(f"order must be 'paper' or 'fresh', got {o['order']!r}")
        if o["sampling"] not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got "
                             f"{o['sampling']!r}")
        if int(o["replay"]) < 0:
            raise ValueError(f"replay must be >= 0, got {o['replay']}")
        if o["sampling"] in PAIRED and (int(o["k"]) % 2 or int(o["k"]) < 4
                                        or int(o["replay"])):
            raise ValueError(f"{o['sampling']} sampling needs an even k >= 4 and no replay, "
                             f"got k = {o['k']}, replay = {o['replay']}")
        if o["sampling"] == "paired" and self.space.free_mask.all():
            raise ValueError("paired sampling shares the fixed parameters between a pair's "
                             "rows, and this space fixes none: its pairs would be independent "
                             "draws with a one-sample baseline; use another sampling")
        if not float(o["shrink"]) >= 0 or (float(o["shrink"]) and int(o["replay"])):
            raise ValueError(f"shrink must be >= 0 and needs no replay (importance-weighted "
                             f"samples have no sampling variance estimate), got shrink = "
                             f"{o['shrink']}, replay = {o['replay']}")
        self.gate = EvidenceGate(float(o["shrink"])) if float(o["shrink"]) else None
        self.model = ctx.task.build_model(self.torch_gen).to(ctx.device)
        self.opt_theta = torch.optim.Adam(self.model.parameters(), lr=float(o["lr_theta"]))
        self.psi_t = torch.tensor(self.space.psi, dtype=torch.float64, device=ctx.device,
                                  requires_grad=True)
        self.opt_psi = make_psi_optimizer(o["psi_optimizer"], self.psi_t, lr=float(o["lr_psi"]),
                                          kl=float(o["kl_step"]),
                                          momentum=float(o["psi_momentum"]))
        self.free = torch.tensor(self.space.free_mask, device=ctx.device)
        self.damping = float(o["damping"])
        self.v: torch.Tensor | None = None
        # (latents, data, log q at the psi they were drawn from), oldest first
        self.replay: collections.deque = collections.deque(maxlen=int(o["replay"]) or None)

    @property
    def images_per_step(self) -> int:
        return int(self.options["k"])

    def _hyper_params(self) -> list[torch.nn.Parameter]:
        if self.options["hessian"] == "head":
            return self.ctx.task.head_parameters(self.model)
        return [p for p in self.model.parameters() if p.requires_grad]

    def step(self) -> dict[str, Any]:
        o, ctx, task = self.options, self.ctx, self.ctx.task
        latents = self.space.sample(int(o["k"]), self.rng,
                                    stratified=o["sampling"] == "stratified",
                                    antithetic=o["sampling"] == "antithetic",
                                    paired=o["sampling"] == "paired")
        data = self.render(latents)
        record: dict[str, Any] = {}
        skipped, hyper_s = "", 0.0
        if o["order"] == "fresh":  # the new samples are unseen by theta when they judge psi
            skipped, hyper_s = self._hyper_step(data, latents, record)
        t0 = time.perf_counter()
        fitted = fit(task, self.model, self.opt_theta, data, epochs=int(o["epochs"]),
                     batch_size=int(o["batch_size"]), generator=self.torch_gen)
        fine_tune_s = time.perf_counter() - t0
        self.budget.train_s += fine_tune_s
        self.model.eval()  # BatchNorm frozen for validation and every second-order step
        val_metric = task.metric(self.model, ctx.val)
        self.budget.evaluations += 1
        record.update(fine_tune_s=fine_tune_s, train_loss=fitted.loss)
        if not fitted.ok:
            skipped = "non-finite training loss; theta restored"
        elif o["order"] == "paper":
            skipped, hyper_s = self._hyper_step(data, latents, record)
        if int(o["replay"]):
            self.replay.append((latents, data, self.space.log_prob(latents)))
        if skipped:  # a warm-up iteration is not a skip: psi stays by design
            warnings.warn(f"autosimulate step {self.iteration}: {skipped}", stacklevel=2)
        self.iteration += 1
        self.set_psi(self.psi_t.detach().cpu().numpy(), {"val_metric": val_metric})
        record.update(val_metric=val_metric, hyper_s=hyper_s,
                      overhead=hyper_s / max(fine_tune_s, 1e-9), skipped=skipped,
                      damping=self.damping)
        return record

    def _hyper_step(self, data: TaskData, latents: np.ndarray,
                    record: dict[str, Any]) -> tuple[str, float]:
        """Hypergradient and psi step (none in warm-up); returns (why skipped, seconds)."""
        t1 = time.perf_counter()
        if self.iteration < int(self.options["warmup"]):
            record["warmup"] = True
            return "", time.perf_counter() - t1
        self.model.eval()
        result = self._hypergradient(data, latents)
        grad = result.grad
        if not torch.isfinite(grad).all() or (self.v is not None
                                              and not torch.isfinite(self.v).all()):
            skipped = f"non-finite hypergradient; damping raised to {self.damping * 10:g}"
            self.damping *= 10
            self.v = None
            return skipped, time.perf_counter() - t1
        self.v = result.v
        self._psi_step(grad, result.grad_var, record)
        record.update(cg_iterations=result.cg_iterations, cg_residual=result.cg_residual,
                      cg_negative_curvature=result.cg_negative_curvature,
                      hypergrad_norm=float(grad.norm()))
        return "", time.perf_counter() - t1

    def _pool(self, data: TaskData, latents: np.ndarray
              ) -> tuple[TaskData, np.ndarray, torch.Tensor | None, str]:
        """This step's samples, plus the replayed ones with their importance weights."""
        if not self.replay:
            return data, latents, None, self.options["baseline"]
        all_latents = np.concatenate([r[0] for r in self.replay] + [latents])
        drawn = np.concatenate([r[2] for r in self.replay] + [self.space.log_prob(latents)])
        log_w = self.space.log_prob(all_latents) - drawn
        w = np.exp(log_w - log_w.max())
        w /= w.sum()
        pooled = TaskData.cat([r[1] for r in self.replay] + [data])
        weights = torch.as_tensor(w, dtype=torch.float32, device=self.ctx.device)
        return pooled, all_latents, weights, "mean"

    def _hypergradient(self, data, latents: np.ndarray):
        o, ctx, task = self.options, self.ctx, self.ctx.task
        params = self._hyper_params()
        new_data = data
        data, latents, weights, baseline = self._pool(data, latents)
        score = torch.as_tensor(self.space.score(latents, active_only=bool(o["active_only"])),
                                dtype=torch.float32, device=ctx.device)
        val = ctx.val
        if int(o["val_batch"]) and int(o["val_batch"]) < len(val):
            idx = torch.randperm(len(val), generator=self.torch_gen)[: int(o["val_batch"])]
            val = val.subset(idx.to(val.inputs.device))
        # the Hessian is of this step's training loss (replayed samples only widen the
        # score-function average)
        n_h = int(o["hessian_subsample"])
        sub = new_data.subset(slice(0, n_h)) if n_h and n_h < len(new_data) else new_data
        hessian_loss = None
        if sub is not data:  # latents are i.i.d.: the first n_h are a sample
            hessian_loss = lambda: task.loss(self.model, sub)  # noqa: E731
        v0 = self.v if self.v is not None and o["approx"] == "quadratic" else None
        return hypergradient(
            approx=o["approx"], params=params,
            per_sample_loss=lambda: task.per_sample_loss(self.model, data),
            val_loss=lambda: task.loss(self.model, val),
            score=score, weights=weights, v0=v0, hessian_loss=hessian_loss,
            baseline=baseline, normalise=bool(o["normalise"]),
            pairs=o["sampling"] in PAIRED,
            partner=(torch.ones(self.space.psi_dim, dtype=torch.bool, device=ctx.device)
                     if o["sampling"] == "paired" else None),
            cg=CGSettings(damping=self.damping, max_iter=int(o["cg_iters"]),
                          rtol=float(o["cg_rtol"])))

    def _psi_step(self, grad: torch.Tensor, grad_var: torch.Tensor | None,
                  record: dict[str, Any]) -> None:
        old = self.psi_t.detach().cpu().numpy().copy()
        if isinstance(self.opt_psi, NaturalStep):
            step = self.opt_psi.direction(self.space, old, grad.detach().cpu().double().numpy(),
                                          self.space.free_mask)
            record["psi_kl"] = NaturalStep.kl_of(self.space, old, step)
            new = old + step
        else:
            self.opt_psi.zero_grad(set_to_none=True)
            self.psi_t.grad = torch.where(self.free, grad.to(self.psi_t.dtype),
                                          torch.zeros_like(self.psi_t))
            self.opt_psi.step()
            new = self.psi_t.detach().cpu().numpy()
        if self.gate is not None and grad_var is not None:
            f = self.gate.factor(grad.detach().cpu().double().numpy(),
                                 grad_var.detach().cpu().double().numpy())
            new = old + f * (new - old)
            record["psi_gate"] = float(f[self.space.free_mask].mean())
        with torch.no_grad():
            clamped = clamp_psi(self.space, new)
            self.psi_t.copy_(torch.as_tensor(clamped, device=self.psi_t.device))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "model": self.model.state_dict(),
                "opt_theta": self.opt_theta.state_dict(), "opt_psi": self.opt_psi.state_dict(),
                "gate": None if self.gate is None else self.gate.state_dict(),
                "psi_t": self.psi_t.detach().cpu(), "damping": self.damping,
                "v": None if self.v is None else self.v.cpu(),
                "replay": [(lat, d.inputs.cpu(), d.targets.cpu(), lq)
                           for lat, d, lq in self.replay]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        dev = self.ctx.device
        self.model.load_state_dict(state["model"])
        self.opt_theta.load_state_dict(state["opt_theta"])
        with torch.no_grad():
            self.psi_t.copy_(state["psi_t"].to(dev))
        self.opt_psi.load_state_dict(state["opt_psi"])
        if self.gate is not None and state.get("gate") is not None:
            self.gate.load_state_dict(state["gate"])
        self.damping = float(state["damping"])
        self.v = None if state["v"] is None else state["v"].to(dev)
        self.replay.clear()
        for lat, inputs, targets, lq in state.get("replay", []):
            self.replay.append((lat, TaskData(inputs.to(dev), targets.to(dev)), lq))
