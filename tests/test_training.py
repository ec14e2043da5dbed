"""train_fresh: the fresh-model training that black-box evaluations and bench judges share."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from optimizer.simulators.toy import sample_real
from optimizer.tasks.classifier import ClassifierTask
from optimizer.training import train_fresh


def _data():
    task = ClassifierTask()
    return task, task.to_data(sample_real(256, np.random.default_rng(0)), "cpu")


def test_constant_rate_is_a_fresh_model_and_plain_minibatch_adam():
    """train_fresh against a loop written out here: a model from the generator, then per epoch
    one shuffle (from the same generator) and Adam steps on the mean cross-entropy of each
    minibatch of 48, the last one short (16); the loss reported is the mean over the steps."""
    task, data = _data()
    model, result = train_fresh(task, data, device="cpu", generator=torch.Generator()
                                .manual_seed(3), lr=1e-2, epochs=4, batch_size=48)
    gen = torch.Generator().manual_seed(3)
    ref = task.build_model(gen)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    losses = []
    for _ in range(4):
        order = torch.randperm(256, generator=gen)
        for start in range(0, 256, 48):
            idx = order[start:start + 48]
            opt.zero_grad()
            loss = F.cross_entropy(ref(data.inputs[idx]), data.targets[idx])
            loss.backward()
            opt.step()
            losses.append(loss.item())
    for a, b in zip(model.state_dict().values(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert result.ok and result.steps == len(losses) == 4 * 6
    assert result.loss == pytest.approx(np.mean(losses), rel=1e-6)  # float32 sums


def test_decay_goes_linearly_towards_lr_final_and_still_learns(monkeypatch):
    task, data = _data()
    seen = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    model, result = train_fresh(task, data, device="cpu",
                                generator=torch.Generator().manual_seed(0), lr=1e-2,
                                epochs=5, batch_size=64, lr_final=0.01)
    per_epoch = sorted(set(seen), reverse=True)
    np.testing.assert_allclose(per_epoch, [1e-2 * (1 - 0.99 * e / 5) for e in range(5)])
    assert result.ok and result.steps == 5 * 4 and np.isfinite(result.loss)
    model.eval()
    assert task.metric(model, data) > 0.5  # two classes: above chance after 20 steps
