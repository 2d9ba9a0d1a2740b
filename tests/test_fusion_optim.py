"""fgvu's AdamW: torch.optim.AdamW's update, step by step, without importing torch._dynamo."""

import copy
import subprocess
import sys

import pytest
import torch

from fgvu.fusion.optim import AdamW


def _train(model, optimizer, scheduler, steps: int, seed: int = 0, skip_every: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        x = torch.randn(16, 6, generator=gen)
        optimizer.zero_grad(set_to_none=True)
        head = model[2] if skip_every and step % skip_every == 0 else model  # sometimes only the last layer
        inputs = torch.randn(16, 8, generator=gen) if head is model[2] else x
        head(inputs).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("schedule", ["onecycle", "lambda"])
def test_updates_equal_torch_adamw(schedule):
    torch.manual_seed(0)
    ours_model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    torch_model = copy.deepcopy(ours_model)
    ours = AdamW(ours_model.parameters(), lr=3e-3, weight_decay=0.05)
    theirs = torch.optim.AdamW(torch_model.parameters(), lr=3e-3, weight_decay=0.05)

    def scheduler(opt):
        if schedule == "onecycle":  # also cycles beta1 through param_groups["betas"]
            return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=30)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))

    # every third step only the last layer has gradients: its bias corrections run ahead
    _train(ours_model, ours, scheduler(ours), 30, skip_every=3)
    _train(torch_model, theirs, scheduler(theirs), 30, skip_every=3)
    for a, b in zip(ours_model.parameters(), torch_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert ours.state[ours_model[0].weight]["step"] == 20 and ours.state[ours_model[2].weight]["step"] == 30


def test_groups_defaults_and_bad_arguments():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    opt = AdamW([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5] and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="appears twice"):
        AdamW([{"params": [a]}, {"params": [a]}])
    with pytest.raises(ValueError, match="invalid"):
        AdamW([a], lr=-1.0)
    a.grad = torch.ones(2)
    opt.zero_grad(set_to_none=False)
    assert a.grad is not None and not a.grad.any()
    opt.zero_grad()
    assert a.grad is None


def test_a_fit_never_imports_dynamo(tmp_path):
    script = f"""
import sys
from fgvu.fusion.config import FitConfig, ModelConfig
from fgvu.fusion.train import fit
from fgvu.synth.features import write_feature_cache
cache = write_feature_cache({str(tmp_path / 'c')!r}, videos=4, frames=120, dims=8)
cfg = FitConfig(model=ModelConfig(d_model=8, mlp_hidden=8, heads=2), epochs=2, batch_size=8,
                schedule="onecycle", augment=("noise", "mixup"), recon_weight=0.1, device="cpu")
fit(cache, cfg, {str(tmp_path / 'run')!r}, progress=False)
assert "torch" in sys.modules
print("dynamo imported:", "torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "dynamo imported: False" in out.stdout
