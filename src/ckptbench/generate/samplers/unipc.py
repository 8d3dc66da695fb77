"""A1111's UniPC (``sd_samplers_timesteps_impl.unipc`` over its ``models/diffusion/uni_pc``; Zhao et al.
2023): multistep predictor–corrector in data prediction, variant B(h) = h ("bh1"), order 3 with lower
orders at the end, continuous time uniform from t = 1 to t = 1/1000 in as many steps as A1111's DDIM grid
has points (31 at 30 steps). The noise schedule is the model's, log α interpolated linearly in t
(``NoiseScheduleVP('discrete')``); the model sees the timestep ``(t − 1/1000) · 1000``, not rounded.
"""

from __future__ import annotations

import torch

from ckptbench.errors import CkptbenchError
from ckptbench.generate.samplers.timesteps import EpsModel

ORDER = 3
VARIANT = "bh1"


class _Schedule:
    """Continuous-time view of the discrete VP schedule: log α(t) piecewise linear between t = n / 1000."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        self.log_alphas = 0.5 * torch.log(alphas_cumprod.float().cpu())
        self.count = len(self.log_alphas)
        self.times = torch.linspace(0.0, 1.0, self.count + 1)[1:]

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        flat = t.reshape(-1).cpu().contiguous()
        low = (torch.searchsorted(self.times, flat) - 1).clamp(0, self.count - 2)
        x0, x1 = self.times[low], self.times[low + 1]
        y0, y1 = self.log_alphas[low], self.log_alphas[low + 1]
        return (y0 + (flat - x0) * (y1 - y0) / (x1 - x0)).to(t.device)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_alpha(t)))

    def half_log_snr(self, t: torch.Tensor) -> torch.Tensor:
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))


def _per_image(value: torch.Tensor) -> torch.Tensor:
    return value[:, None, None, None]


class _UniPC:
    def __init__(self, model: EpsModel, schedule: _Schedule) -> None:
        self.model = model
        self.schedule = schedule

    def data_prediction(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = self.model(x, (t - 1.0 / self.schedule.count) * 1000.0)
        return (x - _per_image(self.schedule.std(t)) * eps) / _per_image(self.schedule.alpha(t))

    def update(self, x: torch.Tensor, outputs: list[torch.Tensor], times: list[torch.Tensor], t: torch.Tensor,
               order: int, use_corrector: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One B(h) step from ``times[-1]`` to ``t`` using the last ``order`` data predictions."""
        schedule = self.schedule
        lambda_prev, lambda_t = schedule.half_log_snr(times[-1]), schedule.half_log_snr(t)
        last_output = outputs[-1]
        sigma_prev, sigma_t = schedule.std(times[-1]), schedule.std(t)
        alpha_t = torch.exp(schedule.log_alpha(t))
        h = lambda_t - lambda_prev
        ratios: list[torch.Tensor | float] = []
        differences: list[torch.Tensor] = []
        for back in range(1, order):
            ratio = ((schedule.half_log_snr(times[-(back + 1)]) - lambda_prev) / h)[0]
            ratios.append(ratio)
            differences.append((outputs[-(back + 1)] - last_output) / ratio)
        ratios.append(1.0)
        rks = torch.tensor(ratios, device=x.device)
        hh = -h[0]
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = hh if VARIANT == "bh1" else torch.expm1(hh)
        powers, coefficients = [], []
        factorial = 1
        for i in range(1, order + 1):
            powers.append(torch.pow(rks, i - 1))
            coefficients.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        matrix = torch.stack(powers)
        b = torch.tensor(coefficients, device=x.device)
        stacked = torch.stack(differences, dim=1) if differences else None
        base = _per_image(sigma_t / sigma_prev) * x - _per_image(alpha_t * h_phi_1) * last_output
        predicted = base
        if stacked is not None:
            rhos_p = (torch.tensor([0.5], device=b.device) if order == 2
                      else torch.linalg.solve(matrix[:-1, :-1], b[:-1]))
            predicted = base - _per_image(alpha_t * b_h) * torch.einsum("k,bkchw->bchw", rhos_p, stacked)
        if not use_corrector:
            return predicted, None
        rhos_c = torch.tensor([0.5], device=b.device) if order == 1 else torch.linalg.solve(matrix, b)
        output = self.data_prediction(predicted, t)
        correction = torch.einsum("k,bkchw->bchw", rhos_c[:-1], stacked) if stacked is not None else 0
        corrected = base - _per_image(alpha_t * b_h) * (correction + rhos_c[-1] * (output - last_output))
        return corrected, output


def unipc(model: EpsModel, x: torch.Tensor, grid: torch.Tensor, alphas_cumprod: torch.Tensor,
          img2img: bool = False) -> torch.Tensor:
    """UniPC over ``len(grid)`` steps; img2img starts at the grid's last (highest) timestep as A1111 does."""
    steps = len(grid)
    if steps < ORDER:
        raise CkptbenchError(f"UniPC needs at least {ORDER} steps (its order), as in A1111; this pass has {steps}.")
    schedule = _Schedule(alphas_cumprod)
    solver = _UniPC(model, schedule)
    start = float(grid[-1].cpu() / 1000 + 1 / 1000) if img2img else 1.0
    times = torch.linspace(start, 1.0 / schedule.count, steps + 1).to(x.device)
    rows = x.shape[0]
    t = times[0].expand(rows)
    outputs, previous_times = [solver.data_prediction(x, t)], [t]
    for step in range(1, steps + 1):
        t = times[step].expand(rows)
        order = min(step, ORDER, steps + 1 - step)
        x, output = solver.update(x, outputs, previous_times, t, order, use_corrector=step < steps)
        if step < ORDER:  # warming up: the history grows to ORDER entries
            outputs.append(output)  # type: ignore[arg-type]
            previous_times.append(t)
            continue
        outputs, previous_times = [*outputs[1:], outputs[-1]], [*previous_times[1:], t]
        if step < steps:
            outputs[-1] = output if output is not None else solver.data_prediction(x, t)
    return x
