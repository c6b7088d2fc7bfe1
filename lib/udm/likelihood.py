"""Exact log-likelihoods of ODE flows: the instantaneous change of variables, solved adaptively.

A flow dx/dt = f(x, t) carries a density p_t along its trajectories, and along one trajectory

    d log p_t(x(t)) / dt = -div f(x(t), t),

so integrating the state and the divergence together from the data (t = t_start) to the prior
(t = t_end) gives

    log p_{t_start}(x) = log p_{t_end}(x(t_end)) + int_{t_start}^{t_end} div f(x(t), t) dt.

The divergence is computed exactly with automatic differentiation (one backward pass per
coordinate) or estimated with Hutchinson's trace estimator, div f = E_v[v^T (df/dx) v] for probes
v with E[v v^T] = I; the probes are drawn once and held fixed for the whole solve, so the ODE
stays deterministic and an adaptive solver can control its error. The ODE is solved with SciPy's
``solve_ivp`` (an adaptive, error-controlled Runge-Kutta method), in float64.

:func:`continuous_elbo` is the other road to a diffusion model's likelihood: the variational
bound of the T-step chain in the limit T -> infinity, a lower bound rather than an exact value.

``velocity(x, t)`` takes a batch ``x`` of shape (B, ...) and a Python float ``t`` and returns a
tensor shaped like ``x``: for a diffusion model, the probability-flow ODE's velocity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from udm.gaussian import diag_gaussian_log_prob, kl_diag_gaussians
from udm.paths import Path, check_path
from udm.validate import (
    check_finite,
    check_int_at_least,
    check_positive,
    check_same_shape,
    check_tensor,
)

#: A time-dependent velocity field ``velocity(x (B, ...), t) -> (B, ...)``.
Velocity = Callable[[Tensor, float], Tensor]

_DIVERGENCES = ("exact", "hutchinson")
_PROBES = ("rademacher", "gaussian")


def _evaluate(velocity: Velocity, x: Tensor, t: float) -> Tensor:
    out = velocity(x, t)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"velocity must return a tensor shaped like x {tuple(x.shape)}, got {got}")
    return out


def divergence_exact(velocity: Velocity, x: Tensor, t: float) -> tuple[Tensor, Tensor]:
    """The velocity at ``x`` and its exact divergence sum_i d f_i / d x_i, shape (B,).

    One backward pass per coordinate of an example: exact, and affordable for the book's
    2-D points and 64-pixel digits. The rows of a batch must not interact inside ``velocity``.

    Book: eq. (eq-instantaneous-change), Chapter on continuous time and the likelihood.
    """
    check_tensor("x", x, min_ndim=2)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        f = _evaluate(velocity, x, t)
        flat_f = f.reshape(x.shape[0], -1)
        div = torch.zeros(x.shape[0], dtype=f.dtype, device=f.device)
        for i in range(flat_f.shape[1]):
            (grad,) = torch.autograd.grad(flat_f[:, i].sum(), x, retain_graph=True)
            div = div + grad.reshape(x.shape[0], -1)[:, i]
    return f.detach(), div.detach()


def divergence_hutchinson(
    velocity: Velocity, x: Tensor, t: float, probes: Tensor
) -> tuple[Tensor, Tensor]:
    """The velocity at ``x`` and Hutchinson's estimate of its divergence, shape (B,).

    ``probes`` has shape (K, *x.shape): K probe vectors per example with E[v v^T] = I; the
    estimate is the mean over them of v^T (df/dx) v, one vector-Jacobian product each. It is
    unbiased; its variance falls as 1/K.

    Book: eq. (eq-hutchinson), Chapter on continuous time and the likelihood.
    """
    check_tensor("x", x, min_ndim=2)
    check_tensor("probes", probes, min_ndim=3)
    if probes.shape[1:] != x.shape:
        raise ValueError(
            f"probes must have shape (K, *x.shape) = (K, {', '.join(map(str, x.shape))}), "
            f"got {tuple(probes.shape)}"
        )
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        f = _evaluate(velocity, x, t)
        estimate = torch.zeros(x.shape[0], dtype=f.dtype, device=f.device)
        for v in probes:
            (vjp,) = torch.autograd.grad((f * v).sum(), x, retain_graph=True)
            estimate = estimate + (vjp * v).reshape(x.shape[0], -1).sum(dim=1)
    return f.detach(), estimate.detach() / probes.shape[0]


@dataclass(frozen=True)
class FlowLikelihood:
    """What :func:`ode_log_likelihood` returns, for a batch of B examples.

    Attributes:
        log_prob: log p_{t_start}(x), shape (B,), in nats.
        prior_log_prob: log p_{t_end}(x(t_end)), shape (B,).
        integrated_divergence: int div f dt along each trajectory, shape (B,).
        endpoint: x(t_end), the data carried to the prior, shaped like x.
        n_evaluations: how many times the solver evaluated the velocity (and divergence).
    """

    log_prob: Tensor
    prior_log_prob: Tensor
    integrated_divergence: Tensor
    endpoint: Tensor
    n_evaluations: int


def ode_log_likelihood(
    velocity: Velocity,
    x: Tensor,
    prior_log_prob: Callable[[Tensor], Tensor],
    *,
    t_start: float,
    t_end: float,
    divergence: str = "exact",
    n_probes: int = 1,
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    method: str = "RK45",
) -> FlowLikelihood:
    """log p_{t_start}(x) of a flow by the instantaneous change of variables, shape (B,).

    Solves d/dt (x, l) = (f(x, t), div f(x, t)) from ``t_start`` to ``t_end`` with SciPy's
    ``solve_ivp`` (``method``, ``rtol``, ``atol``), all examples of the batch together, in
    float64; then log p = ``prior_log_prob``(x(t_end)) + l(t_end). ``divergence`` is "exact"
    (autograd) or "hutchinson" (``n_probes`` fixed probes per example, Rademacher or Gaussian,
    drawn from ``generator``). ``prior_log_prob`` maps (B, ...) to (B,).

    Book: eq. (eq-flow-log-likelihood), Chapter on continuous time and the likelihood.
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as velocity(x, t), got {type(velocity)}")
    if not callable(prior_log_prob):
        raise TypeError(f"prior_log_prob must be callable, got {type(prior_log_prob)}")
    check_tensor("x", x, min_ndim=2)
    check_finite("x", x)
    if divergence not in _DIVERGENCES:
        raise ValueError(f"divergence must be one of {_DIVERGENCES}, got {divergence!r}")
    if probe not in _PROBES:
        raise ValueError(f"probe must be one of {_PROBES}, got {probe!r}")
    check_int_at_least("n_probes", n_probes, 1)
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    for name, value in (("t_start", t_start), ("t_end", t_end)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not t_start < t_end:
        raise ValueError(f"t_start must be below t_end, got {t_start} and {t_end}")

    x64 = x.detach().to(torch.float64)
    shape, batch = x64.shape, x64.shape[0]
    probes = None
    if divergence == "hutchinson":
        draw = torch.randn((n_probes, *shape), generator=generator, dtype=torch.float64)
        probes = draw.sign() if probe == "rademacher" else draw
        probes = probes.to(x.device)

    def rhs(t: float, state: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(state[:-batch]).reshape(shape).to(x.device)
        if probes is None:
            f, div = divergence_exact(velocity, xt, float(t))
        else:
            f, div = divergence_hutchinson(velocity, xt, float(t), probes)
        return np.concatenate([f.double().cpu().numpy().ravel(), div.double().cpu().numpy()])

    start = np.concatenate([x64.cpu().numpy().ravel(), np.zeros(batch)])
    solution = solve_ivp(rhs, (t_start, t_end), start, method=method, rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"the ODE solver failed: {solution.message}")
    final = solution.y[:, -1]
    endpoint = torch.from_numpy(final[:-batch].copy()).reshape(shape).to(x.device)
    integrated = torch.from_numpy(final[-batch:].copy()).to(x.device)
    prior = prior_log_prob(endpoint)
    check_tensor("prior_log_prob(x(t_end))", prior, shape=(batch,))
    return FlowLikelihood(
        log_prob=prior + integrated,
        prior_log_prob=prior,
        integrated_divergence=integrated,
        endpoint=endpoint,
        n_evaluations=int(solution.nfev),
    )


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over every coordinate of an example, shape (B,).

    Book: the prior of every model in the book.
    """
    check_tensor("z", z, min_ndim=2)
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * (flat.square().sum(dim=1) + flat.shape[1] * np.log(2.0 * np.pi))


@dataclass(frozen=True)
class ContinuousELBO:
    """The terms of the continuous-time ELBO of a diffusion model, in nats, each shape (B,).

    Attributes:
        reconstruction: log N(x_0; x0_hat(x_{t_min}), sigma(t_min)^2 I), one-sample estimate.
        prior: KL(q(x_{t_max} | x_0) || N(0, prior_std^2 I)), exact.
        diffusion: 1/2 int e^lambda ||x_0 - x0_hat(x_lambda)||^2 dlambda over the path's
            log-SNR range, by Gauss-Legendre quadrature (one noise draw per node or shared).
        dim: the number of coordinates of one example.
    """

    reconstruction: Tensor
    prior: Tensor
    diffusion: Tensor
    dim: int

    @property
    def elbo(self) -> Tensor:
        """reconstruction - prior - diffusion, shape (B,): a lower bound on log p(x_0)."""
        return self.reconstruction - self.prior - self.diffusion

    @property
    def bits_per_dim(self) -> Tensor:
        """The negative ELBO in bits per coordinate, -elbo / (dim ln 2), shape (B,)."""
        return -self.elbo / (self.dim * np.log(2.0))


def continuous_elbo(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    path: Path,
    x0: Tensor,
    *,
    n_nodes: int = 32,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> ContinuousELBO:
    """The ELBO of a diffusion model on ``path`` in the limit of infinitely many steps.

    The T-step bound of the Chapter on VDMs, with its steps between ``path.t_min`` and
    ``path.t_max``, tends as T -> infinity to reconstruction - prior - diffusion with

        diffusion(x_0) = 1/2 int_{lambda(t_max)}^{lambda(t_min)} e^lambda
                         E_eps ||x_0 - x0_hat(a x_0 + s eps, t(lambda))||^2 dlambda,

    which depends on the path only through the two log-SNR endpoints. The integral is taken
    by ``n_nodes``-point Gauss-Legendre quadrature in lambda, the decoder at t_min is the
    Gaussian N(x0_hat, sigma(t_min)^2 I) and the prior N(0, prior_std^2 I). ``noise`` (shaped
    like ``x0``) is shared by every node and the decoder (common random numbers: the
    integrand is then one smooth function of lambda per example); without it each node draws
    its own from ``generator``. ``denoiser(x_t, t)`` takes times as a tensor of shape (B,).
    Runs without gradients.

    Book: eq. (eq-continuous-loss-lambda), Chapter on continuous time and the likelihood.
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x_t, t), got {type(denoiser)}")
    check_path(path)
    check_tensor("x0", x0, min_ndim=2)
    check_finite("x0", x0)
    check_int_at_least("n_nodes", n_nodes, 1)
    if noise is not None:
        check_tensor("noise", noise)
        check_same_shape("x0", x0, "noise", noise)
        check_finite("noise", noise)
    low, high = path.log_snr(path.t_max).item(), path.log_snr(path.t_min).item()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"the log-SNR must be finite at t_min and t_max on {path!r}")
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    lambdas = torch.from_numpy(0.5 * (high - low) * nodes + 0.5 * (high + low))
    weights = torch.from_numpy(0.5 * (high - low) * weights)
    times = path.t_from_log_snr(lambdas).tolist()
    batch = x0.shape[0]

    def draw() -> Tensor:
        if noise is not None:
            return noise
        return torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)

    def denoise(t: float, eps: Tensor) -> Tensor:
        c = path.coefficients(t)
        x_t = float(c.a) * x0 + float(c.s) * eps
        return denoiser(x_t, torch.full((batch,), t, dtype=torch.float64))

    with torch.no_grad():
        diffusion = torch.zeros(batch, dtype=torch.float64, device=x0.device)
        for t, lam, w in zip(times, lambdas.tolist(), weights.tolist(), strict=True):
            error = (x0 - denoise(t, draw())).reshape(batch, -1).square().sum(dim=1)
            diffusion = diffusion + 0.5 * w * np.exp(lam) * error.double()
        sigma_min = path.sigma(path.t_min).item()
        x0_hat = denoise(path.t_min, draw())
        reconstruction = diag_gaussian_log_prob(
            x0, x0_hat, torch.full_like(x0, 2.0 * np.log(sigma_min))
        ).double()
        c = path.coefficients(path.t_max)
        prior = kl_diag_gaussians(
            float(c.a) * x0,
            torch.full_like(x0, 2.0 * np.log(float(c.s))),
            torch.zeros_like(x0),
            torch.full_like(x0, 2.0 * np.log(path.prior_std())),
        ).double()
    return ContinuousELBO(reconstruction, prior, diffusion, dim=x0[0].numel())
