"""The one optimisation recipe shared by CPT and the fine-tuning baselines."""

import numpy as np
import pytest
import torch

from cptbench.methods.optim import (adamw_with_schedule, batch_order, effective_batch_size, linear_schedule,
                            parameter_groups, seeded_torch_rng, warmup_steps)


def test_schedule_is_the_release_linear_warmup_then_decay():
    assert warmup_steps(500, 0.1) == 50 and warmup_steps(10, 0.15) == 2 and warmup_steps(7, 0.0) == 0
    assert [linear_schedule(s, 10, 2) for s in range(11)] == [0.0, 0.5, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0.0]
    assert [linear_schedule(s, 4, 0) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]


def test_scheduler_drives_the_optimizer_lr():
    p = torch.nn.Parameter(torch.zeros(2))
    opt, sched = adamw_with_schedule([{"params": [p], "weight_decay": 0.0}], 1.0, steps=4, warmup=0.5)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [0.0, 0.5, 1.0, 0.5]
    assert opt.defaults["betas"] == (0.9, 0.98)


def test_batch_size_rule():
    assert effective_batch_size(4) == 4 and effective_batch_size(40) == 16
    assert effective_batch_size(4, 8) == 4 and effective_batch_size(40, 8) == 8


def test_no_weight_decay_on_bias_and_layernorm():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GELU(), torch.nn.LayerNorm(4), torch.nn.Linear(4, 1))
    decay, plain = parameter_groups(model, 0.01, lr=1e-3)
    assert decay["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0 and decay["lr"] == 1e-3
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in plain["params"]} == {id(model[0].bias), id(model[2].weight), id(model[2].bias), id(model[3].bias)}
    model[0].weight.requires_grad_(False)
    assert all(p is not model[0].weight for g in parameter_groups(model, 0.01) for p in g["params"])


def test_batch_stream_covers_items_evenly():
    batches = list(batch_order(5, 2, 10, np.random.default_rng(0)))
    assert len(batches) == 10 and all(len(b) == 2 for b in batches)
    assert np.bincount(np.concatenate(batches), minlength=5).tolist() == [4] * 5
    assert all(sorted(b) == [0, 1, 2, 3] for b in batch_order(4, 4, 3, np.random.default_rng(1)))


def test_seeded_torch_rng_repeats_and_restores():
    state = torch.random.get_rng_state()
    with seeded_torch_rng(88):
        a = torch.rand(3)
    with seeded_torch_rng(88):
        b = torch.rand(3)
    assert torch.equal(a, b) and torch.equal(torch.random.get_rng_state(), state)
