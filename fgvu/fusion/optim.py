"""AdamW for the fusion head, without torch's import of torch._dynamo.

Every `torch.optim` optimizer wraps `add_param_group` (called by its constructor) and
`zero_grad` in `torch._disable_dynamo`, which imports `torch._dynamo` at the first call: no
constructor flag (`foreach`, `fused`, `capturable`) avoids it, and the import is 1-3 CPU-s of
every `fit` process (9 % of a short fit). This subclass implements those two methods and
`step` itself; it is still a `torch.optim.Optimizer`, so torch's learning-rate schedulers
(LambdaLR, OneCycleLR with its momentum cycling on `betas`) drive it unchanged.

The update is torch.optim.AdamW's (decoupled weight decay, bias correction, no amsgrad), for
dense real parameters; `tests/test_fusion_optim.py` checks it against torch's step by step.
"""

from __future__ import annotations

import torch


class AdamW(torch.optim.Optimizer):
    """AdamW with torch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 1e-2."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"AdamW: invalid lr {lr}, betas {betas}, eps {eps} or weight decay {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters; options it does not set take the defaults."""
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError("AdamW: a parameter appears twice")
        self.param_groups.append({**self.defaults, **param_group, "params": params})

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self, closure=None):
        """One AdamW update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._state(p) for p in params]
            grads = [p.grad for p in params]
            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]
            lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            if decay:
                torch._foreach_mul_(params, 1 - lr * decay)
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            # bias corrections per parameter: a parameter without a gradient at some step lags behind
            steps = [s["step"] for s in states]
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, [(1 - beta2 ** t) ** 0.5 for t in steps])
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, [-lr / (1 - beta1 ** t) for t in steps])
        return loss

    def _state(self, p: torch.Tensor) -> dict:
        """The moments of `p`, created at its first step; counts the step."""
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        return state
