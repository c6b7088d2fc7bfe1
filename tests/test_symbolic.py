"""Tests for udm.symbolic against closed forms derived by hand and numerical integration."""

import pytest
import scipy.integrate
import scipy.stats
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from udm.symbolic import (
    assert_equal,
    assert_not_equal,
    complete_the_square,
    gaussian_pdf,
    kl_by_integration,
)

x = sp.Symbol("x", real=True)
m1, m2 = sp.symbols("m1 m2", real=True)
s1, s2 = sp.symbols("s1 s2", positive=True)


def kl_closed_form(m1, s1, m2, s2):
    """KL(N(m1, s1^2) || N(m2, s2^2)), derived by hand.

    E_p[log p - log q] = log(s2 / s1) - E[(x - m1)^2] / (2 s1^2) + E[(x - m2)^2] / (2 s2^2)
    with E[(x - m1)^2] = s1^2 and E[(x - m2)^2] = s1^2 + (m1 - m2)^2.
    """
    return sp.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - sp.Rational(1, 2)


# ---------------------------------------------------------------- densities and KL


def test_gaussian_pdf_matches_scipy_and_takes_a_variance():
    density = gaussian_pdf(x, m1, s1**2)
    value = float(density.subs({x: 0.3, m1: -0.5, s1: 2.0}))
    assert value == pytest.approx(scipy.stats.norm.pdf(0.3, loc=-0.5, scale=2.0), rel=1e-14)
    assert_equal(sp.integrate(density, (x, -sp.oo, sp.oo)), 1, "the density integrates to 1")


def test_kl_by_integration_matches_the_closed_form():
    kl = kl_by_integration(gaussian_pdf(x, m1, s1**2), gaussian_pdf(x, m2, s2**2), x)
    assert_equal(kl, kl_closed_form(m1, s1, m2, s2), "KL between univariate Gaussians")


def test_kl_by_integration_accepts_symbols_without_assumptions():
    y, a, b = sp.symbols("y a b")  # no assumptions: treated as real
    kl = kl_by_integration(gaussian_pdf(y, a, s1**2), gaussian_pdf(y, b, s2**2), y)
    assert kl.free_symbols == {a, b, s1, s2}
    assert_equal(kl, kl_closed_form(a, s1, b, s2))


def test_kl_by_integration_non_gaussian_matches_numerical_quadrature():
    # KL(N(0, 1) || Laplace(0, 1)): the log-ratio has |x|, so this takes the direct route.
    laplace = sp.exp(-sp.Abs(x)) / 2
    kl = kl_by_integration(gaussian_pdf(x, 0, 1), laplace, x)

    def integrand(t):
        return scipy.stats.norm.pdf(t) * (
            scipy.stats.norm.logpdf(t) - scipy.stats.laplace.logpdf(t)
        )

    # The tails beyond |t| = 30 weigh less than 1e-190; quad's infinite range meets 0 * inf there.
    numeric, _ = scipy.integrate.quad(integrand, -30, 30, points=[0.0], epsabs=1e-13)
    assert float(kl) == pytest.approx(numeric, rel=1e-9)


# ---------------------------------------------------------------- completing the square


@settings(max_examples=30, deadline=None)
@given(
    st.integers(-9, 9).filter(bool),
    st.integers(-20, 20),
    st.integers(-20, 20),
    st.integers(1, 9),
)
def test_complete_the_square_round_trips_on_random_quadratics(a, b, c, d):
    expr = sp.Rational(a, d) * x**2 + b * x + c
    lead, h, k = complete_the_square(expr, x)
    assert sp.expand(lead * (x - h) ** 2 + k - expr) == 0
    assert lead == sp.Rational(a, d)
    assert x not in (h.free_symbols | k.free_symbols)


def test_complete_the_square_with_symbolic_coefficients():
    # The exponent of N(x; m1, s1^2) N(x; m2, s2^2), times -2: precisions add.
    expr = (x - m1) ** 2 / s1**2 + (x - m2) ** 2 / s2**2
    a, h, k = complete_the_square(expr, x)
    assert_equal(a, 1 / s1**2 + 1 / s2**2, "precision of the product")
    assert_equal(h, (m1 * s2**2 + m2 * s1**2) / (s1**2 + s2**2), "mean of the product")
    assert_equal(a * (x - h) ** 2 + k, expr, "round trip")


@pytest.mark.parametrize(
    "expr",
    [x**3 + x, 2 * x + 1, sp.exp(x) + x**2, 1 / x + x**2, m1],
    ids=["cubic", "linear", "exp", "reciprocal", "constant"],
)
def test_complete_the_square_rejects_non_quadratics(expr):
    with pytest.raises(ValueError, match="expr must be a polynomial of degree 2 in x"):
        complete_the_square(expr, x)


# ---------------------------------------------------------------- assert_equal


def test_assert_equal_passes_on_true_identities():
    assert_equal((x + 1) ** 2, x**2 + 2 * x + 1)
    assert_equal(sp.log(s1 * s2), sp.log(s1) + sp.log(s2))  # needs s1, s2 > 0
    assert_equal(sp.sqrt(s1**2), s1)
    assert_equal(sp.exp(m1) * sp.exp(m2), sp.exp(m1 + m2))


def test_assert_equal_raises_and_shows_both_sides():
    wrong_variance = m1**2 + s1  # a std where a variance belongs
    with pytest.raises(AssertionError) as info:
        assert_equal(wrong_variance, m1**2 + s1**2, "second moment")
    message = str(info.value)
    assert "second moment" in message
    assert str(wrong_variance) in message and str(m1**2 + s1**2) in message
    assert str(sp.simplify(s1 - s1**2)) in message


def test_assert_equal_respects_assumptions():
    # log(a b) = log a + log b is false for general complex a, b: no forcing allowed.
    a, b = sp.symbols("a b")
    with pytest.raises(AssertionError, match="differ"):
        assert_equal(sp.log(a * b), sp.log(a) + sp.log(b))


# ---------------------------------------------------------------- assert_not_equal


def test_assert_not_equal_returns_the_difference_of_a_real_mistake():
    wrong = kl_closed_form(m1, s1, m2, s2) + sp.Rational(1, 2)  # dropped the -1/2
    difference = assert_not_equal(wrong, kl_closed_form(m1, s1, m2, s2), "dropped -1/2")
    assert difference == sp.Rational(1, 2)


def test_assert_not_equal_raises_on_equal_expressions():
    with pytest.raises(AssertionError, match="expected the two to differ, but they are equal"):
        assert_not_equal(sp.log(s2 / s1), sp.log(s2) - sp.log(s1), "log of a ratio")


def test_assert_not_equal_falls_back_to_evaluation_at_positive_points():
    # Without assumptions simplify keeps sqrt(y**2) - y, which vanishes for every y > 0.
    y = sp.Symbol("y")
    assert sp.simplify(sp.sqrt(y**2) - y) != 0
    with pytest.raises(AssertionError, match="agree at every test point"):
        assert_not_equal(sp.sqrt(y**2), y)


def test_assert_not_equal_cannot_decide_without_numbers():
    f = sp.Function("f")
    with pytest.raises(AssertionError, match="could not decide"):
        assert_not_equal(f(x), f(x) ** 2)


def test_matrices_are_compared_entry_by_entry() -> None:
    a, b = sp.symbols("a b", positive=True)
    rotation = sp.Matrix([[a, -b], [b, a]])
    assert_equal(rotation.T * rotation, (a**2 + b**2) * sp.eye(2), what="R^T R")
    assert_equal(sp.zeros(2, 2), sp.zeros(2, 2))
    with pytest.raises(AssertionError, match="the two sides differ"):
        assert_equal(rotation * rotation, (a**2 + b**2) * sp.eye(2))
    with pytest.raises(AssertionError, match="cannot compare shapes"):
        assert_equal(sp.eye(2), sp.eye(3))
    assert assert_not_equal(rotation, rotation.T) != 0
    with pytest.raises(AssertionError, match="expected the two to differ"):
        assert_not_equal(rotation, rotation)
