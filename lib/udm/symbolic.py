"""SymPy helpers for the book's derivation checks.

A chapter states an identity, then a cell proves it with :func:`assert_equal`; a
"common mistake" box shows the wrong version being rejected with
:func:`assert_not_equal`. The other helpers build the pieces those checks need:
a normal density, a KL divergence by direct integration, a completed square.
"""

from __future__ import annotations

import cmath
import random
from collections.abc import Callable

import sympy as sp


def gaussian_pdf(x: sp.Expr, mean: sp.Expr, var: sp.Expr) -> sp.Expr:
    """The univariate normal density N(x; mean, var) as a SymPy expression.

    ``var`` is the **variance**, not the standard deviation: pass ``s**2`` for a
    standard deviation ``s``. Declare it ``positive=True`` so that SymPy can simplify
    ``sqrt(var)`` and ``log(var)``.

    Book: eq. (eq-gaussian-log-density), Chapter 3.
    """
    x, mean, var = sp.sympify(x), sp.sympify(mean), sp.sympify(var)
    return sp.exp(-((x - mean) ** 2) / (2 * var)) / sp.sqrt(2 * sp.pi * var)


def kl_by_integration(p: sp.Expr, q: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """KL(p || q) = integral over the real line of p(x) log(p(x) / q(x)) dx, simplified.

    ``p`` and ``q`` are densities in ``x``. The log-ratio is expanded first
    (``log(p) - log(q)``, exponentials cancelled), which for Gaussians leaves a
    polynomial in ``x``; the integral is then a sum of moments of ``p``, which SymPy
    computes quickly and exactly. Other log-ratios are integrated directly. ``x`` and
    every symbol without assumptions are treated as real (a density's arguments and
    parameters are real numbers); declare variances and scales ``positive=True``.

    Book: eq. (eq-kl-diag-gaussians), Chapter 3.
    """
    p, q = sp.sympify(p), sp.sympify(q)
    # Real dummies let SymPy cancel log(exp(z)) = z and skip complex-parameter cases.
    unassumed = {
        s: sp.Dummy(s.name, real=True)
        for s in (p.free_symbols | q.free_symbols | {x})
        if s.is_extended_real is None
    }
    back = {dummy: s for s, dummy in unassumed.items()}
    p, q = p.subs(unassumed), q.subs(unassumed)
    xr = unassumed.get(x, x)
    log_ratio = sp.expand(sp.expand_log(sp.log(p) - sp.log(q), force=True))
    if log_ratio.is_polynomial(xr):
        kl = sum(
            (
                coefficient * sp.integrate(p * xr**k, (xr, -sp.oo, sp.oo), conds="none")
                for (k,), coefficient in sp.Poly(log_ratio, xr).terms()
            ),
            sp.Integer(0),
        )
    else:
        kl = sp.integrate(sp.expand(p * log_ratio), (xr, -sp.oo, sp.oo), conds="none")
    return sp.logcombine(sp.expand(sp.simplify(kl))).subs(back)


def complete_the_square(expr: sp.Expr, x: sp.Symbol) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """Return ``(a, h, k)`` with ``expr == a * (x - h)**2 + k`` for ``expr`` quadratic in ``x``.

    From ``expr = a x**2 + b x + c``: ``h = -b / (2 a)`` and ``k = c - b**2 / (4 a)``.
    This is the step that turns a product of Gaussian densities into one Gaussian:
    ``-1/2 * a * (x - h)**2`` in the exponent gives mean ``h`` and variance ``1 / a``.
    Raises ValueError unless ``expr`` is a polynomial of degree exactly 2 in ``x``.

    Book: the derivation of q(x_{t-1} | x_t, x_0), Chapter on VDMs.
    """
    expr = sp.sympify(expr)
    try:
        poly = sp.Poly(sp.expand(expr), x)
    except sp.PolynomialError as error:
        raise ValueError(f"expr must be a polynomial of degree 2 in {x}, got {expr}") from error
    if poly.degree() != 2:
        raise ValueError(
            f"expr must be a polynomial of degree 2 in {x}, got degree {poly.degree()}: {expr}"
        )
    a, b, c = (poly.coeff_monomial(x**n) for n in (2, 1, 0))
    return sp.simplify(a), sp.simplify(-b / (2 * a)), sp.simplify(c - b**2 / (4 * a))


# Tried in order after sympy.simplify leaves a nonzero difference. None ignores
# assumptions (no force=True), so none can make a false identity pass.
_FALLBACKS: tuple[Callable[[sp.Expr], sp.Expr], ...] = (
    sp.expand,
    lambda d: sp.simplify(sp.expand(d)),
    lambda d: sp.simplify(sp.expand(sp.expand_log(d))),
    lambda d: sp.simplify(sp.powsimp(sp.expand(d))),
)


def _simplified_difference(lhs: sp.Expr, rhs: sp.Expr) -> sp.Expr:
    """Return ``lhs - rhs`` simplified, and 0 when any of the transformations reaches 0."""
    difference = sp.simplify(sp.sympify(lhs) - sp.sympify(rhs))
    if difference == 0:
        return sp.Integer(0)
    for transform in _FALLBACKS:
        if transform(difference) == 0:
            return sp.Integer(0)
    return difference


def _prefix(what: str) -> str:
    return f"{what}: " if what else ""


def _entry_pairs(lhs: sp.Expr, rhs: sp.Expr, what: str) -> list[tuple[sp.Expr, sp.Expr]]:
    """Pair up the two sides entry by entry: one pair for scalars, one per entry for matrices."""
    lhs, rhs = sp.sympify(lhs), sp.sympify(rhs)
    lhs_is_matrix, rhs_is_matrix = isinstance(lhs, sp.MatrixBase), isinstance(rhs, sp.MatrixBase)
    if not (lhs_is_matrix or rhs_is_matrix):
        return [(lhs, rhs)]
    if not (lhs_is_matrix and rhs_is_matrix) or lhs.shape != rhs.shape:
        shapes = [getattr(side, "shape", "scalar") for side in (lhs, rhs)]
        raise AssertionError(f"{_prefix(what)}cannot compare shapes {shapes[0]} and {shapes[1]}")
    return list(zip(lhs, rhs, strict=True))


def assert_equal(lhs: sp.Expr, rhs: sp.Expr, what: str = "") -> None:
    """Check the identity ``lhs == rhs`` symbolically; raise AssertionError if unproven.

    Passes when ``sympy.simplify(lhs - rhs)`` is 0, or when expanding, expanding logs
    or combining powers first gets it to 0 (none of these ignores the symbols'
    assumptions). Matrices are compared entry by entry. Otherwise the message shows
    both sides and the simplified difference. ``what`` names the identity in that message.

    Book: every derivation check.
    """
    for left, right in _entry_pairs(lhs, rhs, what):
        difference = _simplified_difference(left, right)
        if difference != 0:
            raise AssertionError(
                f"{_prefix(what)}the two sides differ\n"
                f"  lhs = {left}\n  rhs = {right}\n  simplify(lhs - rhs) = {difference}"
            )


def _differs_somewhere(difference: sp.Expr, wrong: sp.Expr, right: sp.Expr) -> bool | None:
    """Evaluate at seeded random positive points: True if nonzero somewhere.

    Returns False if the difference vanishes at every point that evaluates to a finite
    number, None if no point does.
    """
    rng = random.Random(20221125)
    expressions = (difference, wrong, right)
    symbols = sorted(set().union(*(e.free_symbols for e in expressions)), key=str)
    finite_points = 0
    for _ in range(6):
        # Floats, not exact rationals: substituting rationals into something like
        # 17**(21381376*v) builds an enormous exact integer before evaluating it.
        point = {s: sp.Float(rng.randint(1, 40) / rng.randint(1, 9), 30) for s in symbols}
        try:
            values = [complex(e.evalf(30, subs=point)) for e in expressions]
        except (TypeError, ValueError):
            continue
        if not all(cmath.isfinite(v) for v in values):
            continue
        finite_points += 1
        d, w, r = (abs(v) for v in values)
        if d > 1e-12 * (1.0 + w + r):
            return True
    return False if finite_points else None


def assert_not_equal(wrong: sp.Expr, right: sp.Expr, what: str = "") -> sp.Expr:
    """Check that a "common mistake" ``wrong`` really differs from ``right``.

    Returns the nonzero simplified difference ``wrong - right`` (handy to display; for
    matrices, the first entry that differs). Raises AssertionError when the two are
    equal: when simplification reaches 0, or, if it cannot decide, when the difference
    vanishes at several random positive values of the symbols (the book's
    symbols are mostly variances and scales, so "differs" means "differs for positive
    values"). Matrices differ when any entry does.

    Book: every "Common mistake" box.
    """
    prefix = _prefix(what)
    shown = f"\n  wrong = {wrong}\n  right = {right}"
    left_by_simplify = []
    for left, right_entry in _entry_pairs(wrong, right, what):
        difference = _simplified_difference(left, right_entry)
        if difference == 0:
            continue
        verdict = _differs_somewhere(difference, left, right_entry)
        if verdict is None:
            raise AssertionError(
                f"{prefix}could not decide: simplify(wrong - right) = {difference} is not 0, "
                f"and it evaluates to no finite number at positive points{shown}"
            )
        if verdict:
            return difference
        left_by_simplify.append(difference)
    if left_by_simplify:
        raise AssertionError(
            f"{prefix}expected the two to differ, but they agree at every test point "
            f"(simplify left {left_by_simplify[0]}){shown}"
        )
    raise AssertionError(f"{prefix}expected the two to differ, but they are equal{shown}")
