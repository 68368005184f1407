"""Special functions of the closed-form ELU, SELU and step duals, as sympy functions with exact
derivatives and arbitrary-precision evaluation: Owen's T in angular form, the Mills ratio and the
wedge integrals of the ELU dual with their remainders (the numerically safe forms near ρ = ±1 and
at large variances; their array versions are :mod:`ntkdsl.arraycode.wedge_support`)."""

from __future__ import annotations

import sympy as sp

from .functions import _powered


class owens_t_angle(sp.Function):  # noqa: N801
    """Owen's T function in angular form: T(h, tan φ) = (1/2π)·∫₀^φ exp(−h²/(2cos²t)) dt.

    Owen (1956), 'Tables for computing bivariate normal probabilities'. The closed-form ELU/SELU
    duals (:mod:`ntkdsl.activations.elu`) are sums of bivariate normal orthant probabilities, and
    those are Owen's T functions whose second argument is a ratio y/w with w = √(q1q2 − c²) → 0 at
    ρ = ±1. Taking the angle φ = atan2(y, w) ∈ [−π/2, π/2] instead of the ratio keeps every
    argument finite (ρ = ±1, zero-norm inputs) and lets the diagonal simplify exactly
    (T(0, tan φ) = φ/(2π)). Printed as ``xps.owens_t(h, xp.tan(φ))``; tan(±π/2) in float64 is
    ±1.6e16, where T differs from T(h, ±∞) by less than 1e-17.
    """

    nargs = 2

    @classmethod
    def eval(cls, h, phi):
        if h.is_zero:
            return phi / (2 * sp.pi)
        if phi.is_zero:
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        h, phi = self.args
        if argindex == 1:  # ∂T/∂h = −φ(h)·erf(h·tan φ/√2)/2
            return -sp.exp(-h**2 / 2) / (2 * sp.sqrt(2 * sp.pi)) * sp.erf(h * sp.tan(phi) / sp.sqrt(2))
        return sp.exp(-h**2 / (2 * sp.cos(phi) ** 2)) / (2 * sp.pi)  # the integrand at t = φ

    def _eval_evalf(self, prec):
        import mpmath

        h, phi = (a.evalf(prec) for a in self.args)
        if not (h.is_number and phi.is_number and h.is_real and phi.is_real):
            return None
        with mpmath.workprec(prec):
            hh, pp = mpmath.mpf(str(h)), mpmath.mpf(str(phi))
            value = mpmath.quad(lambda t: mpmath.exp(-hh**2 / (2 * mpmath.cos(t) ** 2)), [0, pp]) / (2 * mpmath.pi)
        return sp.Float(value, dps=mpmath.libmp.prec_to_dps(prec))

    @_powered
    def _latex(self, printer):
        h, phi = (printer._print(a) for a in self.args)
        return rf"T\left({h}, \tan\left({phi}\right)\right)"


class mills(sp.Function):  # noqa: N801
    """Mills' ratio R(x) = Φ(−x)/φ(x) = √(π/2)·erfcx(x/√2), x ≥ 0 (Abramowitz & Stegun 26.2.12):
    bounded by 1/x, where Φ(−x) underflows and e^{x²/2} overflows. R' = x·R − 1.
    Printed as a call of :func:`ntkdsl.arraycode.wedge_support.mills`."""

    nargs = 1

    def fdiff(self, argindex=1):
        (x,) = self.args
        return x * self - 1

    def _eval_evalf(self, prec):
        import mpmath

        (x,) = self.args
        if not x.is_number:
            return None
        with mpmath.workprec(prec + 20):
            v = mpmath.mpf(str(x.evalf(prec + 20)))
            value = mpmath.sqrt(mpmath.pi / 2) * mpmath.exp(v * v / 2) * mpmath.erfc(v / mpmath.sqrt(2))
        return sp.Float(value, dps=mpmath.libmp.prec_to_dps(prec))

    @_powered
    def _latex(self, printer):
        return rf"R\left({printer._print(self.args[0])}\right)"


class mills_rem(sp.Function):  # noqa: N801
    """(R(x) + x)/(2√(2π)) − 1/4 = ¼·erfcx(x/√2) − ¼ + x/(2√(2π)): E[e^u·1{u < 0}]/2 past its
    first-order expansion in √q = x (u ~ N(0, x²)), evaluated without cancellation at small x."""

    nargs = 1

    def fdiff(self, argindex=1):
        (x,) = self.args
        return x * mills(x) / (2 * sp.sqrt(2 * sp.pi))

    def _eval_evalf(self, prec):
        (x,) = self.args
        if not x.is_number:
            return None
        return ((mills(x) + x) / (2 * sp.sqrt(2 * sp.pi)) - sp.Rational(1, 4)).evalf(prec + 30)

    @_powered
    def _latex(self, printer):
        x = printer._print(self.args[0])
        return rf"\left(\frac{{R\left({x}\right) + {x}}}{{2\sqrt{{2\pi}}}} - \frac{{1}}{{4}}\right)"


class wedge(sp.Function):  # noqa: N801
    """W(A, β) = (1/2π)·∫₀^β M(A·cos b) db with M(x) = 1 − x·R(x), |β| ≤ π/2: the Gaussian measure
    of a wedge with apex at distance A from the origin, scaled by e^{A²/2} (= e^{A²/2}·[T(A sin β, ∞)
    − T(A sin β, cot β)], Owen's T; Owen 1956). Bounded by |β|/(2π) for every A, so the ELU dual
    (:mod:`ntkdsl.activations.elu`) never forms e^{q/2}·Φ(−√q)-type products that overflow or
    underflow. ∂W/∂β = M(A cos β)/(2π), ∂W/∂A = A·W − sin β·R(A cos β)/(2π).
    Printed as a call of :func:`ntkdsl.arraycode.wedge_support.wedge`."""

    nargs = 2

    @classmethod
    def eval(cls, a, beta):
        if beta.is_zero:
            return sp.S.Zero
        if a.is_zero:
            return beta / (2 * sp.pi)
        return None

    def fdiff(self, argindex=1):
        a, beta = self.args
        x = a * sp.cos(beta)
        if argindex == 2:
            return (1 - x * mills(x)) / (2 * sp.pi)
        return a * self - sp.sin(beta) * mills(x) / (2 * sp.pi)

    def _eval_evalf(self, prec):
        import mpmath

        a, beta = self.args
        if not (a.is_number and beta.is_number):
            return None
        with mpmath.workprec(prec + 30):
            aa, bb = mpmath.mpf(str(a.evalf(prec + 30))), mpmath.mpf(str(beta.evalf(prec + 30)))
            m = lambda b: 1 - aa * mpmath.cos(b) * mpmath.sqrt(mpmath.pi / 2) * mpmath.exp((aa * mpmath.cos(b)) ** 2 / 2) \
                * mpmath.erfc(aa * mpmath.cos(b) / mpmath.sqrt(2))
            value = mpmath.quad(m, [0, bb]) / (2 * mpmath.pi)
        return sp.Float(value, dps=mpmath.libmp.prec_to_dps(prec))

    @_powered
    def _latex(self, printer):
        return rf"W\left({printer._print(self.args[0])}, {printer._print(self.args[1])}\right)"


class wedge_rem(sp.Function):  # noqa: N801
    """W(A, β) − (β − √(π/2)·A·sin β)/(2π): the wedge function past its first-order expansion in A,
    evaluated without cancellation at small A (:func:`ntkdsl.arraycode.wedge_support.wedge_rem`)."""

    nargs = 2

    @classmethod
    def eval(cls, a, beta):
        if beta.is_zero or a.is_zero:
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        a, beta = self.args
        w = wedge(a, beta)
        if argindex == 2:
            return w.fdiff(2) - (1 - sp.sqrt(sp.pi / 2) * a * sp.cos(beta)) / (2 * sp.pi)
        return w.fdiff(1) + sp.sqrt(sp.pi / 2) * sp.sin(beta) / (2 * sp.pi)

    def _eval_evalf(self, prec):
        a, beta = self.args
        if not (a.is_number and beta.is_number):
            return None
        return (wedge(a, beta) - (beta - sp.sqrt(sp.pi / 2) * a * sp.sin(beta)) / (2 * sp.pi)).evalf(prec + 30)

    @_powered
    def _latex(self, printer):
        return rf"\tilde{{W}}\left({printer._print(self.args[0])}, {printer._print(self.args[1])}\right)"
