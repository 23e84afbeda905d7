"""kiln's own float64 math, for devices without float64 transcendentals.

SPIR-V's GLSL.std.450 instructions (Sin, Exp, Log, Pow, ...) take 16/32-bit
floats only.  On target="vulkan", each float64 `math` op of a kernel whose
function has no device instruction is implemented by a call of the function
of the same name here (sin, exp, log, pow, tgamma, ...): passes/infer.c
compiles the ones a module needs into it (KlModule.devmath) and the SPIR-V
backend calls them.  They are written in kiln's own language and compiled
like any kernel's callee; they also run unchanged under CPython.

Accuracy (see docs/gpu.md): the elementary functions carry double-double
intermediates (a value hi + lo travels as complex(hi, lo), since a kiln
function returns one value) and round once at the end; measured within
1 ulp of C's libm, most results correctly rounded.  Errors (ValueError,
OverflowError) are not raised here: passes/lower_builtins.c checks the
result around the math op, as it does for libm.

Polynomial coefficients are Taylor coefficients (exact rationals rounded
once, computed at import); other constants were computed with mpmath at
300+ bits and written as the nearest doubles (hi) and the nearest doubles
to the remainders (lo).
"""
import math
import struct
from fractions import Fraction


def f64_bits(x: float) -> int:
    """The IEEE bits of float64 x as a signed int64 (a kiln builtin)."""
    return struct.unpack("<q", struct.pack("<d", x))[0]


def f64_from_bits(i: int) -> float:
    """The float64 whose bits are int64 i (a kiln builtin)."""
    return struct.unpack("<d", struct.pack("<q", i))[0]


def _q(num: int, den: int) -> float:
    return float(Fraction(num, den))


_INF = math.inf
_MAGIC = 6755399441055744.0      # 1.5 * 2**52: (x + _MAGIC) - _MAGIC rounds
_MAGIC_BITS = 4843621399236968448  # f64_bits(_MAGIC)
_SPLIT = 134217729.0             # 2**27 + 1 (Veltkamp splitting)
_ABS = 0x7FFFFFFFFFFFFFFF
_MANT = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000
_TWO54 = 18014398509481984.0
_P2_1023 = 2.0 ** 1023
_P2_M969 = 2.0 ** -969
_SQRT2 = 1.4142135623730951

# ln 2 split so that k * _LN2_HI is exact for |k| < 2**11
_LN2_HI = 0.6931471805598903
_LN2_LO = 5.497923018708371e-14
_LN2 = 0.6931471805599453
_LN2_L = 2.3190468138462996e-17
_INV_LN2 = 1.4426950408889634
_INV_LN2_L = 2.0355273740931033e-17
_INV_LN10 = 0.4342944819032518
_INV_LN10_L = 1.098319650216765e-17
# pi/2 in three 33-bit parts and a 53-bit rest (n * part exact, |n| < 2**20)
_PIO2_1 = 1.5707963267341256
_PIO2_2 = 6.077100506303966e-11
_PIO2_3 = 2.0222662487111665e-21
_PIO2_4 = 8.4784276603689e-32
_PIO2_H = 1.5707963267948966
_PIO2_L = 6.123233995736766e-17
_PI_H = 3.141592653589793
_PI_L = 1.2246467991473532e-16
_PIO4_H = 0.7853981633974483
_INV_PIO2 = 0.6366197723675814
_ATAN_HALF_H = 0.4636476090008061
_ATAN_HALF_L = 2.2698777452961687e-17
_ATAN_3HALF_H = 0.982793723247329
_ATAN_3HALF_L = 1.3903311031230998e-17
_PIO4_L = 3.061616997868383e-17
_TWO3_H = 0.6666666666666666
_TWO3_L = 3.700743415417188e-17

# e**h - 1 - h - h**2/2 = h**3 * (_E3 + h * (_E4 + ...)): 1/n!
_E3 = _q(1, math.factorial(3))
_E4 = _q(1, math.factorial(4))
_E5 = _q(1, math.factorial(5))
_E6 = _q(1, math.factorial(6))
_E7 = _q(1, math.factorial(7))
_E8 = _q(1, math.factorial(8))
_E9 = _q(1, math.factorial(9))
_E10 = _q(1, math.factorial(10))
_E11 = _q(1, math.factorial(11))
_E12 = _q(1, math.factorial(12))
_E13 = _q(1, math.factorial(13))
_E14 = _q(1, math.factorial(14))
# sin h = h + h**3 * (_S3 + z * (_S5 + ...)), z = h*h: (-1)**k/(2k+1)!
_S3 = _q(-1, math.factorial(3))
_S5 = _q(1, math.factorial(5))
_S7 = _q(-1, math.factorial(7))
_S9 = _q(1, math.factorial(9))
_S11 = _q(-1, math.factorial(11))
_S13 = _q(1, math.factorial(13))
_S15 = _q(-1, math.factorial(15))
_S17 = _q(1, math.factorial(17))
_S19 = _q(-1, math.factorial(19))
# cos h = 1 - z/2 + z**2 * (_C4 + z * (_C6 + ...)): (-1)**k/(2k)!
_C4 = _q(1, math.factorial(4))
_C6 = _q(-1, math.factorial(6))
_C8 = _q(1, math.factorial(8))
_C10 = _q(-1, math.factorial(10))
_C12 = _q(1, math.factorial(12))
_C14 = _q(-1, math.factorial(14))
_C16 = _q(1, math.factorial(16))
_C18 = _q(-1, math.factorial(18))
# 2 atanh s = 2s + 2s**3/3 + s**5 * (_L0 + z * (_L1 + ...)): 2/(2k+5)
_L0 = _q(2, 5)
_L1 = _q(2, 7)
_L2 = _q(2, 9)
_L3 = _q(2, 11)
_L4 = _q(2, 13)
_L5 = _q(2, 15)
_L6 = _q(2, 17)
_L7 = _q(2, 19)
_L8 = _q(2, 21)
_L9 = _q(2, 23)
_L10 = _q(2, 25)
# atan t = t + t**3 * (_T3 + z * (_T5 + ...)): (-1)**k/(2k+1)
_T3 = _q(-1, 3)
_T5 = _q(1, 5)
_T7 = _q(-1, 7)
_T9 = _q(1, 9)
_T11 = _q(-1, 11)
_T13 = _q(1, 13)
_T15 = _q(-1, 15)
_T17 = _q(1, 17)
_T19 = _q(-1, 19)
_T21 = _q(1, 21)
_T23 = _q(-1, 23)
_T25 = _q(1, 25)
_T27 = _q(-1, 27)
_T29 = _q(1, 29)
_T31 = _q(-1, 31)
_T33 = _q(1, 33)
_T35 = _q(-1, 35)
_T37 = _q(1, 37)
_T39 = _q(-1, 39)
_T41 = _q(1, 41)
_T43 = _q(-1, 43)
_T45 = _q(1, 45)


def _g(i: int) -> int:
    """Bits 24*i + 1 ... 24*i + 24 after the binary point of 2/pi."""
    if i <= 24:
        if i <= 12:
            if i <= 6:
                if i <= 3:
                    if i <= 1:
                        if i <= 0:
                            return 10680707
                        return 7228996
                    if i <= 2:
                        return 1387004
                    return 2578385
                if i <= 5:
                    if i <= 4:
                        return 16069853
                    return 12639074
                return 9804092
            if i <= 9:
                if i <= 8:
                    if i <= 7:
                        return 4427841
                    return 16666979
                return 11263675
            if i <= 11:
                if i <= 10:
                    return 12935607
                return 2387514
            return 4345298
        if i <= 18:
            if i <= 15:
                if i <= 14:
                    if i <= 13:
                        return 14681673
                    return 3074569
                return 13734428
            if i <= 17:
                if i <= 16:
                    return 16653803
                return 1880361
            return 10960616
        if i <= 21:
            if i <= 20:
                if i <= 19:
                    return 8533493
                return 3062596
            return 8710556
        if i <= 23:
            if i <= 22:
                return 7349940
            return 6258241
        return 3772886
    if i <= 37:
        if i <= 31:
            if i <= 28:
                if i <= 26:
                    if i <= 25:
                        return 3769171
                    return 3798172
                if i <= 27:
                    return 8675211
                return 12450088
            if i <= 30:
                if i <= 29:
                    return 3874808
                return 9961438
            return 366607
        if i <= 34:
            if i <= 33:
                if i <= 32:
                    return 15675153
                return 9132554
            return 7151469
        if i <= 36:
            if i <= 35:
                return 3571407
            return 2607881
        return 12013382
    if i <= 43:
        if i <= 40:
            if i <= 39:
                if i <= 38:
                    return 4155038
                return 6285869
            return 7677882
        if i <= 42:
            if i <= 41:
                return 13102053
            return 15825725
        return 473591
    if i <= 46:
        if i <= 45:
            if i <= 44:
                return 9065106
            return 15363067
        return 6271263
    if i <= 48:
        if i <= 47:
            return 9264392
        return 5636912
    return 4652155


# ---- double-double arithmetic: a value hi + lo as complex(hi, lo) --------

def _two_sum(a: float, b: float) -> complex:
    """a + b exactly, as the rounded sum and its error."""
    s = a + b
    bb = s - a
    return complex(s, (a - (s - bb)) + (b - bb))


def _fast_sum(a: float, b: float) -> complex:
    """a + b exactly when |a| >= |b| (or a == 0)."""
    s = a + b
    return complex(s, b - (s - a))


def _two_prod(a: float, b: float) -> complex:
    """a * b exactly (|a|, |b| < 2**995, no underflow): product and error."""
    p = a * b
    t = _SPLIT * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLIT * b
    bh = t - (t - b)
    bl = b - bh
    return complex(p, ((ah * bh - p) + ah * bl + al * bh) + al * bl)


def _dd_add(ah: float, al: float, bh: float, bl: float) -> complex:
    s = _two_sum(ah, bh)
    return _fast_sum(s.real, s.imag + (al + bl))


def _dd_mul(ah: float, al: float, bh: float, bl: float) -> complex:
    p = _two_prod(ah, bh)
    return _fast_sum(p.real, p.imag + (ah * bl + al * bh))


def _dd_div(ah: float, al: float, bh: float, bl: float) -> complex:
    """(ah + al) / (bh + bl) for finite non-zero bh and a finite quotient."""
    q = ah / bh
    p = _two_prod(q, bh)
    r = (((ah - p.real) - p.imag) + al - q * bl) / bh
    return _fast_sum(q, r)


def _dd_sqrt(h: float, l: float) -> complex:
    """sqrt(h + l) for h > 0."""
    s = math.sqrt(h)
    p = _two_prod(s, s)
    return _fast_sum(s, (((h - p.real) - p.imag) + l) / (2.0 * s))


def _pow2(k: int) -> float:
    """2.0**k for -1022 <= k <= 1023."""
    return f64_from_bits((k + 1023) << 52)


def _scale(x: float, k: int) -> float:
    """x * 2**k, rounded once (|k| < 3000)."""
    if k > 1023:
        x = x * _P2_1023
        k = k - 1023
        if k > 1023:
            k = 1023
    elif k < -1022:
        x = x * _P2_M969
        k = k + 969
        if k < -1022:
            x = x * _P2_M969
            k = k + 969
            if k < -1022:
                k = -1022
    return x * _pow2(k)


def _round_int(x: float) -> float:
    """x rounded to the nearest integer (ties to even), |x| < 2**51."""
    return (x + _MAGIC) - _MAGIC


def _int_of(xr: float) -> int:
    """The int of an integral float |xr| < 2**51."""
    return f64_bits(xr + _MAGIC) - _MAGIC_BITS


# ---- exponentials ---------------------------------------------------------

def _exp_red(xh: float, xl: float, kf: float) -> complex:
    """e**r - 1 for r = xh + xl - kf * ln 2, |r| < 0.36."""
    rh = xh - kf * _LN2_HI
    r = _two_sum(rh, xl - kf * _LN2_LO)
    h = r.real
    l = r.imag
    p = _two_prod(h, h)
    s = _two_sum(h, 0.5 * p.real)
    # Horner's scheme, from the highest coefficient
    poly = _E13 + h * _E14
    poly = _E12 + h * poly
    poly = _E11 + h * poly
    poly = _E10 + h * poly
    poly = _E9 + h * poly
    poly = _E8 + h * poly
    poly = _E7 + h * poly
    poly = _E6 + h * poly
    poly = _E5 + h * poly
    poly = _E4 + h * poly
    poly = _E3 + h * poly
    tail = h * p.real * poly
    return _fast_sum(s.real, s.imag + (l + (0.5 * p.imag + h * l + tail)))


def _exp_scaled(xh: float, xl: float) -> float:
    """e**(xh + xl), rounded once (overflow to inf, underflow to 0)."""
    if xh > 1000.0:
        return _INF
    if xh < -1000.0:
        return 0.0
    t = (xh + xl) * _INV_LN2
    kf = _round_int(t)
    u = _exp_red(xh, xl, kf)
    s = _fast_sum(1.0, u.real)
    return _scale(s.real + (s.imag + u.imag), _int_of(kf))


def _exp_pair(x: float) -> complex:
    """e**x as hi + lo for |x| <= 710 (no overflow of the parts)."""
    kf = _round_int(x * _INV_LN2)
    u = _exp_red(x, 0.0, kf)
    s = _fast_sum(1.0, u.real)
    y = _fast_sum(s.real, s.imag + u.imag)
    k = _int_of(kf)
    return complex(_scale(y.real, k), _scale(y.imag, k))


def _expm1_pair(x: float) -> complex:
    """e**x - 1 as hi + lo for -60 < x < 700."""
    kf = _round_int(x * _INV_LN2)
    u = _exp_red(x, 0.0, kf)
    if kf == 0.0:
        return u
    tk = _pow2(_int_of(kf))
    s = _two_sum(tk, -1.0)
    return _dd_add(s.real, s.imag, tk * u.real, tk * u.imag)


def exp(x: float) -> float:
    if x != x:
        return x
    return _exp_scaled(x, 0.0)


def exp2(x: float) -> float:
    if x != x:
        return x
    if x > 1100.0:
        return _INF
    if x < -1100.0:
        return 0.0
    kf = _round_int(x)
    f = x - kf
    p = _two_prod(f, _LN2)
    u = _exp_red(p.real, p.imag + f * _LN2_L, 0.0)
    s = _fast_sum(1.0, u.real)
    return _scale(s.real + (s.imag + u.imag), _int_of(kf))


def expm1(x: float) -> float:
    if x != x or x == 0.0:
        return x
    if x < -40.0:
        return -1.0
    if x > 700.0:
        return _exp_scaled(x, 0.0)
    return _expm1_pair(x).real


# ---- logarithms -----------------------------------------------------------

def _log1p_small(f: float, fl: float) -> complex:
    """log(1 + f + fl) as hi + lo for -0.293 <= f <= 0.415, |fl| tiny."""
    den = 2.0 + f
    dl = ((2.0 - den) + f) + fl
    s = f / den
    p = _two_prod(s, den)
    sl = (((f - p.real) - p.imag) + fl - s * dl) / den
    # 2 atanh(s + sl) = 2s + 2s**3/3 + s**5 * L(s*s) + 2 sl (1 + s*s)
    z2 = _two_prod(s, s)
    z = z2.real
    c3 = _two_prod(z, s)
    t = _two_prod(c3.real, _TWO3_H)
    tl = t.imag + (c3.imag + z2.imag * s) * _TWO3_H + c3.real * _TWO3_L
    # Horner's scheme, from the highest coefficient
    poly = _L9 + z * _L10
    poly = _L8 + z * poly
    poly = _L7 + z * poly
    poly = _L6 + z * poly
    poly = _L5 + z * poly
    poly = _L4 + z * poly
    poly = _L3 + z * poly
    poly = _L2 + z * poly
    poly = _L1 + z * poly
    poly = _L0 + z * poly
    r5 = c3.real * z * poly
    hi = _two_sum(2.0 * s, t.real)
    return _fast_sum(hi.real, hi.imag + (tl + r5 + 2.0 * sl * (1.0 + z)))


def _log_pair(x: float) -> complex:
    """log x as hi + lo for finite x > 0."""
    b = f64_bits(x)
    k = -1023
    if b < 4503599627370496:
        b = f64_bits(x * _TWO54)
        k = -1077
    k = k + (b >> 52)
    m = f64_from_bits((b & _MANT) | _ONE_BITS)
    if m > _SQRT2:
        m = m * 0.5
        k = k + 1
    lm = _log1p_small(m - 1.0, 0.0)
    kf = float(k)
    return _dd_add(kf * _LN2_HI, kf * _LN2_LO, lm.real, lm.imag)


def _log1p_pair(vh: float, vl: float) -> complex:
    """log(1 + vh + vl) as hi + lo for vh > -1, finite."""
    if -0.29 < vh and vh < 0.41:
        return _log1p_small(vh, vl)
    a = _two_sum(1.0, vh)
    lg = _log_pair(a.real)
    return _dd_add(lg.real, lg.imag, (a.imag + vl) / a.real, 0.0)


def log(x: float) -> float:
    if x != x or x == _INF:
        return x
    if x < 0.0:
        return math.nan
    if x == 0.0:
        return -_INF
    return _log_pair(x).real


def log2(x: float) -> float:
    if x != x or x == _INF:
        return x
    if x < 0.0:
        return math.nan
    if x == 0.0:
        return -_INF
    lg = _log_pair(x)
    return _dd_mul(lg.real, lg.imag, _INV_LN2, _INV_LN2_L).real


def log10(x: float) -> float:
    if x != x or x == _INF:
        return x
    if x < 0.0:
        return math.nan
    if x == 0.0:
        return -_INF
    lg = _log_pair(x)
    return _dd_mul(lg.real, lg.imag, _INV_LN10, _INV_LN10_L).real


def log1p(x: float) -> float:
    if x != x or x == _INF or x == 0.0:
        return x
    if x < -1.0:
        return math.nan
    if x == -1.0:
        return -_INF
    if abs(x) < 5.551115123125783e-17:
        return x
    return _log1p_pair(x, 0.0).real


def _is_int(y: float) -> bool:
    return math.fmod(y, 1.0) == 0.0


def _is_odd(y: float) -> bool:
    return abs(math.fmod(y, 2.0)) == 1.0


def pow(x: float, y: float) -> float:
    """C99 pow: every special case of its Annex F."""
    if y == 0.0 or x == 1.0:
        return 1.0
    if x != x or y != y:
        return x + y
    ay = abs(y)
    ax = abs(x)
    if ay == _INF:
        if ax == 1.0:
            return 1.0
        if (ax > 1.0) == (y > 0.0):
            return _INF
        return 0.0
    neg = math.copysign(1.0, x) < 0.0
    odd = neg and _is_odd(y)
    if neg and ax != 0.0 and ax != _INF and not _is_int(y):
        return math.nan
    if ax == 0.0 or ax == _INF:
        big = (ax == 0.0) == (y < 0.0)
        r = _INF if big else 0.0
        return -r if odd else r
    if ax == 1.0:
        return -1.0 if odd else 1.0
    lg = _log_pair(ax)
    if ay > 1.8446744073709552e19:
        r = _INF if (lg.real > 0.0) == (y > 0.0) else 0.0
    else:
        t = _dd_mul(y, 0.0, lg.real, lg.imag)
        r = _exp_scaled(t.real, t.imag)
    return -r if odd else r


# ---- hyperbolic functions -------------------------------------------------

def sinh(x: float) -> float:
    ax = abs(x)
    if x != x or ax == _INF or ax < 3.725290298461914e-09:
        return x
    if ax < 22.0:
        e = _exp_pair(ax)
        ie = _dd_div(1.0, 0.0, e.real, e.imag)
        r = 0.5 * _dd_add(e.real, e.imag, -ie.real, -ie.imag).real
    else:
        r = _exp_scaled(ax, -_LN2)
    return r if x > 0.0 else -r


def cosh(x: float) -> float:
    ax = abs(x)
    if x != x:
        return x
    if ax < 7.450580596923828e-09:
        return 1.0
    if ax < 22.0:
        e = _exp_pair(ax)
        ie = _dd_div(1.0, 0.0, e.real, e.imag)
        return 0.5 * _dd_add(e.real, e.imag, ie.real, ie.imag).real
    return _exp_scaled(ax, -_LN2)


def tanh(x: float) -> float:
    ax = abs(x)
    if x != x or ax < 3.725290298461914e-09:
        return x
    if ax > 22.0:
        r = 1.0
    else:
        u = _expm1_pair(2.0 * ax)
        d = _two_sum(u.real, 2.0)
        r = _dd_div(u.real, u.imag, d.real, d.imag + u.imag).real
    return r if x > 0.0 else -r


def asinh(x: float) -> float:
    ax = abs(x)
    if x != x or ax == _INF or ax < 3.725290298461914e-09:
        return x
    if ax > 268435456.0:
        lg = _log_pair(ax)
        r = _dd_add(lg.real, lg.imag, _LN2, _LN2_L).real
    else:
        # log1p(|x| + x*x / (1 + sqrt(1 + x*x)))
        p = _two_prod(ax, ax)
        w = _two_sum(1.0, p.real)
        s = _dd_sqrt(w.real, w.imag + p.imag)
        d = _two_sum(1.0, s.real)
        q = _dd_div(p.real, p.imag, d.real, d.imag + s.imag)
        v = _dd_add(ax, 0.0, q.real, q.imag)
        r = _log1p_pair(v.real, v.imag).real
    return r if x > 0.0 else -r


def acosh(x: float) -> float:
    if x != x or x == _INF:
        return x
    if x < 1.0:
        return math.nan
    if x > 268435456.0:
        lg = _log_pair(x)
        return _dd_add(lg.real, lg.imag, _LN2, _LN2_L).real
    # log1p((x - 1) + sqrt((x - 1)(x + 1)))
    xm = _two_sum(x, -1.0)
    p = _two_prod(x, x)
    w = _two_sum(p.real, -1.0)
    if w.real == 0.0:
        return 0.0
    s = _dd_sqrt(w.real, w.imag + p.imag)
    v = _dd_add(xm.real, xm.imag, s.real, s.imag)
    return _log1p_pair(v.real, v.imag).real


def atanh(x: float) -> float:
    ax = abs(x)
    if x != x or ax < 3.725290298461914e-09:
        return x
    if ax > 1.0:
        return math.nan
    if ax == 1.0:
        return _INF if x > 0.0 else -_INF
    # log1p(2|x| / (1 - |x|)) / 2
    d = _two_sum(1.0, -ax)
    q = _dd_div(2.0 * ax, 0.0, d.real, d.imag)
    r = 0.5 * _log1p_pair(q.real, q.imag).real
    return r if x > 0.0 else -r


# ---- trigonometric functions ----------------------------------------------

def _sin_k(h: float, l: float) -> complex:
    """sin(h + l) as hi + lo for |h| <= pi/4 (a little more is fine)."""
    z = h * h
    # Horner's scheme, from the highest coefficient
    poly = _S17 + z * _S19
    poly = _S15 + z * poly
    poly = _S13 + z * poly
    poly = _S11 + z * poly
    poly = _S9 + z * poly
    poly = _S7 + z * poly
    poly = _S5 + z * poly
    poly = _S3 + z * poly
    p = z * h * poly
    return _fast_sum(h, l * (1.0 - 0.5 * z) + p)


def _cos_k(h: float, l: float) -> complex:
    """cos(h + l) as hi + lo for |h| <= pi/4 (a little more is fine)."""
    p = _two_prod(h, h)
    z = p.real
    hz = 0.5 * z
    w = 1.0 - hz
    e = ((1.0 - w) - hz) - 0.5 * p.imag
    # Horner's scheme, from the highest coefficient
    poly = _C16 + z * _C18
    poly = _C14 + z * poly
    poly = _C12 + z * poly
    poly = _C10 + z * poly
    poly = _C8 + z * poly
    poly = _C6 + z * poly
    poly = _C4 + z * poly
    q = z * z * poly
    return _fast_sum(w, e + (q - h * l))


def _trig_finish(n: int, h: float, l: float, which: int) -> float:
    """sin (which 0), cos (1) or tan (2) of n * pi/2 + h + l."""
    if which == 2:
        s = _sin_k(h, l)
        c = _cos_k(h, l)
        if n & 1 == 0:
            return _dd_div(s.real, s.imag, c.real, c.imag).real
        return -_dd_div(c.real, c.imag, s.real, s.imag).real
    n = n + which
    if n & 1 == 0:
        v = _sin_k(h, l).real
    else:
        v = _cos_k(h, l).real
    if n & 2 == 0:
        return v
    return -v


def _mod4(d: float) -> float:
    """d mod 4 for 0 <= d < 2**51 with integer d / 4 part exact."""
    q = d * 0.25
    f = _round_int(q)
    if f > q:
        f = f - 1.0
    return d - 4.0 * f


def _limb_hi(c: int, w: int) -> float:
    """c * 2**w reduced mod 4 when w > -31, else 0 (Payne-Hanek)."""
    if w >= 2 or w <= -31:
        return 0.0
    return _mod4(float(c) * _pow2(w))


def _limb_lo(c: int, w: int) -> float:
    """c * 2**w when w <= -31, else 0 (Payne-Hanek)."""
    if w > -31:
        return 0.0
    return float(c) * _pow2(w)


def _acc(a: complex, d: float) -> complex:
    t = _two_sum(a.real, d)
    return complex(t.real, a.imag + t.imag)


def _trig_big(x: float, which: int) -> float:
    """sin / cos / tan of finite |x| >= 2**20 by Payne-Hanek reduction:
    x * 2/pi mod 4 from the bits of 2/pi that matter (_g), in exact
    integer limbs of 24 bits, then its fraction in double-double."""
    b = f64_bits(x) & _ABS
    e = (b >> 52) - 1075
    m = (b & _MANT) | 4503599627370496
    i0 = 0
    if e > 25:
        i0 = (e - 2) // 24
    s = e - 24 * (i0 + 1)
    m0 = m & 0xFFFFFF
    m1 = (m >> 24) & 0xFFFFFF
    m2 = m >> 48
    g0 = _g(i0)
    g1 = _g(i0 + 1)
    g2 = _g(i0 + 2)
    g3 = _g(i0 + 3)
    g4 = _g(i0 + 4)
    g5 = _g(i0 + 5)
    g6 = _g(i0 + 6)
    g7 = _g(i0 + 7)
    # x * 2/pi = sum c_t * 2**(24 t + s), t = 2 .. -7
    c7 = m0 * g7
    c6 = m0 * g6 + m1 * g7
    c5 = m0 * g5 + m1 * g6 + m2 * g7
    c4 = m0 * g4 + m1 * g5 + m2 * g6
    c3 = m0 * g3 + m1 * g4 + m2 * g5
    c2 = m0 * g2 + m1 * g3 + m2 * g4
    c1 = m0 * g1 + m1 * g2 + m2 * g3
    c0 = m0 * g0 + m1 * g1 + m2 * g2
    p1 = m1 * g0 + m2 * g1
    p2 = m2 * g0
    c6 = c6 + (c7 >> 24)
    c7 = c7 & 0xFFFFFF
    c5 = c5 + (c6 >> 24)
    c6 = c6 & 0xFFFFFF
    c4 = c4 + (c5 >> 24)
    c5 = c5 & 0xFFFFFF
    c3 = c3 + (c4 >> 24)
    c4 = c4 & 0xFFFFFF
    c2 = c2 + (c3 >> 24)
    c3 = c3 & 0xFFFFFF
    c1 = c1 + (c2 >> 24)
    c2 = c2 & 0xFFFFFF
    c0 = c0 + (c1 >> 24)
    c1 = c1 & 0xFFFFFF
    p1 = p1 + (c0 >> 24)
    c0 = c0 & 0xFFFFFF
    p2 = p2 + (p1 >> 24)
    p1 = p1 & 0xFFFFFF
    # the part above 2**-31 (at most two limbs), mod 4: exact; then its
    # nearest integer n.  The fraction is that part minus n plus the
    # limbs below, summed from the smallest up so that the cancellation
    # when x is close to a multiple of pi/2 happens in one exact step.
    hi = _limb_hi(p2, 48 + s) + _limb_hi(p1, 24 + s) + _limb_hi(c0, s)
    hi = hi + _limb_hi(c1, s - 24) + _limb_hi(c2, s - 48)
    nf = _round_int(hi)
    a = complex(_limb_lo(c7, s - 168), 0.0)
    a = _acc(a, _limb_lo(c6, s - 144))
    a = _acc(a, _limb_lo(c5, s - 120))
    a = _acc(a, _limb_lo(c4, s - 96))
    a = _acc(a, _limb_lo(c3, s - 72))
    a = _acc(a, _limb_lo(c2, s - 48))
    a = _acc(a, _limb_lo(c1, s - 24))
    a = _acc(a, _limb_lo(c0, s))
    a = _acc(a, _limb_lo(p1, 24 + s))
    a = _acc(a, _limb_lo(p2, 48 + s))
    t = _two_sum(hi - nf, a.real)
    f = _two_sum(t.real, t.imag + a.imag)
    r = _dd_mul(f.real, f.imag, _PIO2_H, _PIO2_L)
    n = _int_of(nf)
    if x < 0.0:
        return _trig_finish((-n) & 3, -r.real, -r.imag, which)
    return _trig_finish(n & 3, r.real, r.imag, which)


def _trig(x: float, which: int) -> float:
    """sin (which 0), cos (1) or tan (2) of x."""
    ax = abs(x)
    if ax <= _PIO4_H:
        if x == 0.0 and which != 1:
            return x
        return _trig_finish(0, x, 0.0, which)
    if not (ax < _INF):
        return x - x
    if ax >= 1647099.0:
        return _trig_big(x, which)
    # Cody-Waite: n * (pi/2) in four parts; the first three products and
    # the differences are exact, so r keeps its bits when x is close to
    # a multiple of pi/2
    nf = _round_int(x * _INV_PIO2)
    r = x - nf * _PIO2_1
    a = _two_sum(r, -(nf * _PIO2_2))
    c = _two_sum(a.real, -(nf * _PIO2_3))
    t = _two_sum(c.real, (a.imag + c.imag) - nf * _PIO2_4)
    return _trig_finish(_int_of(nf) & 3, t.real, t.imag, which)


def sin(x: float) -> float:
    return _trig(x, 0)


def cos(x: float) -> float:
    return _trig(x, 1)


def tan(x: float) -> float:
    return _trig(x, 2)


def _atan_pair(x: float, xl: float) -> complex:
    """atan(x + xl) as hi + lo for x >= 0 (inf included)."""
    if x == _INF:
        return complex(_PIO2_H, _PIO2_L)
    ch = 0.0
    cl = 0.0
    if x > 2.4375:
        # pi/2 + atan(-1/x)
        ch = _PIO2_H
        cl = _PIO2_L
        if x > 1.152921504606847e18:
            t = complex(-1.0 / x, 0.0)
        else:
            t = _dd_div(-1.0, 0.0, x, xl)
    elif x > 1.1875:
        # atan(1.5) + atan((x - 1.5) / (1 + 1.5 x))
        ch = _ATAN_3HALF_H
        cl = _ATAN_3HALF_L
        p = _two_prod(1.5, x)
        d = _two_sum(1.0, p.real)
        t = _dd_div(x - 1.5, xl, d.real, d.imag + p.imag + 1.5 * xl)
    elif x > 0.6875:
        # pi/4 + atan((x - 1) / (x + 1))
        ch = _PIO4_H
        cl = _PIO4_L
        d = _two_sum(x, 1.0)
        t = _dd_div(x - 1.0, xl, d.real, d.imag + xl)
    elif x > 0.4375:
        # atan(1/2) + atan((x - 1/2) / (1 + x/2))
        ch = _ATAN_HALF_H
        cl = _ATAN_HALF_L
        d = _two_sum(1.0, 0.5 * x)
        t = _dd_div(x - 0.5, xl, d.real, d.imag + 0.5 * xl)
    else:
        t = complex(x, xl)
    th = t.real
    z = th * th
    # Horner's scheme, from the highest coefficient
    poly = _T43 + z * _T45
    poly = _T41 + z * poly
    poly = _T39 + z * poly
    poly = _T37 + z * poly
    poly = _T35 + z * poly
    poly = _T33 + z * poly
    poly = _T31 + z * poly
    poly = _T29 + z * poly
    poly = _T27 + z * poly
    poly = _T25 + z * poly
    poly = _T23 + z * poly
    poly = _T21 + z * poly
    poly = _T19 + z * poly
    poly = _T17 + z * poly
    poly = _T15 + z * poly
    poly = _T13 + z * poly
    poly = _T11 + z * poly
    poly = _T9 + z * poly
    poly = _T7 + z * poly
    poly = _T5 + z * poly
    poly = _T3 + z * poly
    p = th * z * poly
    s = _two_sum(ch, th)
    return _fast_sum(s.real, s.imag + (cl + (t.imag / (1.0 + z) + p)))


def atan(x: float) -> float:
    if x != x or x == 0.0:
        return x
    r = _atan_pair(abs(x), 0.0).real
    return r if x > 0.0 else -r


def atan2(y: float, x: float) -> float:
    if x != x or y != y:
        return x + y
    sy = math.copysign(1.0, y)
    if y == 0.0:
        if math.copysign(1.0, x) > 0.0:
            return y
        return sy * _PI_H
    ax = abs(x)
    ay = abs(y)
    if ax == _INF:
        if ay == _INF:
            return sy * (0.7853981633974483 if x > 0.0 else 2.356194490192345)
        return sy * (0.0 if x > 0.0 else _PI_H)
    if ax == 0.0 or ay == _INF:
        return sy * _PIO2_H
    if ay > ax * 1.152921504606847e18:
        return sy * _PIO2_H
    if ay < ax * 8.673617379884035e-19:
        if x > 0.0:
            return sy * (ay / ax)
        return sy * _PI_H
    big = ax if ax > ay else ay
    if big > 3.273390607896142e150:
        ax = ax * 1.2882297539194267e-231
        ay = ay * 1.2882297539194267e-231
    elif big < 3.054936363499605e-151:
        ax = ax * 7.76259746298132e230
        ay = ay * 7.76259746298132e230
    q = ay / ax
    p = _two_prod(q, ax)
    ql = ((ay - p.real) - p.imag) / ax
    a = _atan_pair(q, ql)
    if x < 0.0:
        a = _dd_add(_PI_H, _PI_L, -a.real, -a.imag)
    return sy * a.real


def _one_minus_sq(x: float) -> complex:
    """sqrt(1 - x*x) as hi + lo for 0 <= x < 1."""
    p = _two_prod(x, x)
    d = _two_sum(1.0, -p.real)
    w = _fast_sum(d.real, d.imag - p.imag)
    return _dd_sqrt(w.real, w.imag)


def asin(x: float) -> float:
    ax = abs(x)
    if x != x or ax < 7.450580596923828e-09:
        return x
    if ax > 1.0:
        return math.nan
    if ax == 1.0:
        return x * _PIO2_H
    s = _one_minus_sq(ax)
    t = _dd_div(ax, 0.0, s.real, s.imag)
    r = _atan_pair(t.real, t.imag).real
    return r if x > 0.0 else -r


def acos(x: float) -> float:
    ax = abs(x)
    if x != x:
        return x
    if ax > 1.0:
        return math.nan
    if x == 1.0:
        return 0.0
    if x == -1.0:
        return _PI_H
    if ax < 6.938893903907228e-18:
        return _PIO2_H
    s = _one_minus_sq(ax)
    t = _dd_div(s.real, s.imag, ax, 0.0)
    a = _atan_pair(t.real, t.imag)
    if x < 0.0:
        a = _dd_add(_PI_H, _PI_L, -a.real, -a.imag)
    return a.real


# ---- error function and gamma -------------------------------------------

# lgamma(1 + t) = t * (_G1_1 + t * (...)): -euler, (-1)**k zeta(k) / k
_G1_1 = -0.5772156649015329
_G1_2 = 0.8224670334241132
_G1_3 = -0.40068563438653143
_G1_4 = 0.27058080842778454
_G1_5 = -0.20738555102867398
_G1_6 = 0.1695571769974082
_G1_7 = -0.1440498967688461
_G1_8 = 0.12550966952474304
_G1_9 = -0.11133426586956469
_G1_10 = 0.1000994575127818
_G1_11 = -0.09095401714582904
_G1_12 = 0.083353840546109
_G1_13 = -0.0769325164113522
_G1_14 = 0.07143294629536133
_G1_15 = -0.06666870588242046
_G1_16 = 0.06250095514121304
_G1_17 = -0.058823978658684585
_G1_18 = 0.055555767627403614
_G1_19 = -0.05263167937961666
_G1_20 = 0.05000004769810169
_G1_21 = -0.047619070330142226
_G1_22 = 0.04545455629320467
_G1_23 = -0.04347826605304026
_G1_24 = 0.04166666915034121
_G1_25 = -0.04000000119214014
# lgamma(2 + t) = t * (_G2_1 + t * (...)): 1 - euler, (-1)**k (zeta(k) - 1) / k
_G2_1 = 0.42278433509846713
_G2_2 = 0.3224670334241132
_G2_3 = -0.0673523010531981
_G2_4 = 0.020580808427784546
_G2_5 = -0.007385551028673986
_G2_6 = 0.0028905103307415234
_G2_7 = -0.001192753911703261
_G2_8 = 0.0005096695247430425
_G2_9 = -0.00022315475845357939
_G2_10 = 9.945751278180853e-05
_G2_11 = -4.492623673813314e-05
_G2_12 = 2.050721277567069e-05
_G2_13 = -9.439488275268397e-06
_G2_14 = 4.374866789907488e-06
_G2_15 = -2.039215753801366e-06
_G2_16 = 9.55141213040742e-07
_G2_17 = -4.492469198764566e-07
_G2_18 = 2.1207184805554665e-07
_G2_19 = -1.0043224823968099e-07
_LN_SQRT_2PI_H = 0.9189385332046728
_LN_SQRT_2PI_L = -3.8782941580672414e-17
_LN_PI_H = 1.1447298858494002
_LN_PI_L = 1.0265951162707826e-17
_TWO_SQRTPI_H = 1.1283791670955126
_TWO_SQRTPI_L = 1.533545961316588e-17
_INV_SQRTPI = 0.5641895835477563
# Stirling: B(2k) / (2k (2k - 1))
_ST1 = _q(1, 12)
_ST2 = _q(-1, 360)
_ST3 = _q(1, 1260)
_ST4 = _q(-1, 1680)
_ST5 = _q(1, 1188)
_ST6 = _q(-691, 360360)
_ST7 = _q(1, 156)
_ST8 = _q(-3617, 122400)


def _erf_pair(x: float) -> complex:
    """erf x as hi + lo for 0 <= x < 1.6: (2/sqrt pi) e**(-x*x) times
    the positive series sum x**(2n+1) 2**n / (1*3*...*(2n+1)), in
    double-double."""
    p = _two_prod(x, x)
    ch = 2.0 * p.real
    cl = 2.0 * p.imag
    t = complex(x, 0.0)
    s = complex(x, 0.0)
    n = 0
    while t.real > 1e-34 * s.real:
        t = _dd_mul(t.real, t.imag, ch, cl)
        t = _dd_div(t.real, t.imag, float(2 * n + 3), 0.0)
        s = _dd_add(s.real, s.imag, t.real, t.imag)
        n = n + 1
    e = _exp_pair(-p.real)
    e = _dd_mul(e.real, e.imag, 1.0, -p.imag)
    s = _dd_mul(s.real, s.imag, e.real, e.imag)
    return _dd_mul(s.real, s.imag, _TWO_SQRTPI_H, _TWO_SQRTPI_L)


def _erfc_cf(x: float) -> float:
    """erfc x for x >= 1.5: e**(-x*x) / sqrt(pi) / (x + 1/2 / (x + 1 / (x +
    3/2 / (x + ...)))), the continued fraction evaluated backwards."""
    n = 40
    if x < 2.0:
        n = 160
    elif x < 3.0:
        n = 80
    t = 0.0
    while n > 0:
        t = (0.5 * float(n)) / (x + t)
        n = n - 1
    p = _two_prod(x, x)
    return _exp_scaled(-p.real, -p.imag) * (_INV_SQRTPI / (x + t))


def erf(x: float) -> float:
    ax = abs(x)
    if x != x or x == 0.0:
        return x
    if ax < 3.725290298461914e-09:
        return _dd_mul(x, 0.0, _TWO_SQRTPI_H, _TWO_SQRTPI_L).real
    if ax >= 6.0:
        r = 1.0
    elif ax < 1.5:
        r = _erf_pair(ax).real
    else:
        r = 1.0 - _erfc_cf(ax)
    return r if x > 0.0 else -r


def erfc(x: float) -> float:
    if x != x:
        return x
    if x > 27.3:
        return 0.0
    if x < -6.0:
        return 2.0
    ax = abs(x)
    if ax < 1.5:
        e = _erf_pair(ax)
        if x < 0.0:
            return _dd_add(1.0, 0.0, e.real, e.imag).real
        return _dd_add(1.0, 0.0, -e.real, -e.imag).real
    if x < 0.0:
        return 2.0 - _erfc_cf(ax)
    return _erfc_cf(ax)


def _sinpi(x: float) -> float:
    """sin(pi x) for finite x."""
    r = math.fmod(x, 2.0)
    nf = _round_int(2.0 * r)
    f = r - 0.5 * nf
    p = _two_prod(f, _PI_H)
    h = _fast_sum(p.real, p.imag + f * _PI_L)
    return _trig_finish(_int_of(nf) & 3, h.real, h.imag, 0)


def _stirling(xh: float, xl: float) -> complex:
    """lgamma(xh + xl) as hi + lo for xh >= 10, finite."""
    lg = _log_pair(xh)
    if xh > 1e300:
        return complex(xh * (lg.real - 1.0), 0.0)
    a = _dd_mul(xh - 0.5, 0.0, lg.real, lg.imag)
    a = _dd_add(a.real, a.imag, -xh, 0.0)
    a = _dd_add(a.real, a.imag, _LN_SQRT_2PI_H, _LN_SQRT_2PI_L)
    w = 1.0 / xh
    z = w * w
    ser = w * (_ST1 + z * (_ST2 + z * (_ST3 + z * (_ST4 + z * (_ST5 + z * (
        _ST6 + z * (_ST7 + z * _ST8)))))))
    # xl * digamma(xh), digamma x ~ log x - 1/(2x)
    return _fast_sum(a.real, a.imag + (ser + xl * (lg.real - 0.5 * w)))


def _lg1(t: float) -> float:
    """lgamma(1 + t) for |t| <= 0.2."""
    return t * (_G1_1 + t * (_G1_2 + t * (_G1_3 + t * (_G1_4 + t * (_G1_5
        + t * (_G1_6 + t * (_G1_7 + t * (_G1_8 + t * (_G1_9 + t * (_G1_10
        + t * (_G1_11 + t * (_G1_12 + t * (_G1_13 + t * (_G1_14 + t *
        (_G1_15 + t * (_G1_16 + t * (_G1_17 + t * (_G1_18 + t * (_G1_19 +
        t * (_G1_20 + t * (_G1_21 + t * (_G1_22 + t * (_G1_23 + t *
        (_G1_24 + t * (_G1_25)))))))))))))))))))))))))


def _lg2(t: float) -> float:
    """lgamma(2 + t) for |t| <= 0.2."""
    return t * (_G2_1 + t * (_G2_2 + t * (_G2_3 + t * (_G2_4 + t * (_G2_5
        + t * (_G2_6 + t * (_G2_7 + t * (_G2_8 + t * (_G2_9 + t * (_G2_10
        + t * (_G2_11 + t * (_G2_12 + t * (_G2_13 + t * (_G2_14 + t *
        (_G2_15 + t * (_G2_16 + t * (_G2_17 + t * (_G2_18 + t *
        (_G2_19)))))))))))))))))))


def _lgamma_pos(xh: float, xl: float) -> complex:
    """lgamma(xh + xl) as hi + lo for xh > 0 finite (xl tiny)."""
    if xh >= 10.0:
        return _stirling(xh, xl)
    t = xh - 1.0
    if abs(t) <= 0.2:
        t = t + xl
        return complex(_lg1(t), 0.0)
    t = xh - 2.0
    if abs(t) <= 0.2:
        t = t + xl
        return complex(_lg2(t), 0.0)
    # lgamma x = lgamma(x + n) - log(x (x + 1) ... (x + n - 1))
    ph = xh
    pl = xl
    k = 1.0
    z = _two_sum(xh, 1.0)
    while z.real < 10.0:
        f = _two_sum(xh, k)
        pr = _dd_mul(ph, pl, f.real, f.imag + xl)
        ph = pr.real
        pl = pr.imag
        k = k + 1.0
        z = _two_sum(xh, k)
    a = _stirling(z.real, z.imag + xl)
    lp = _log_pair(ph)
    lp = _dd_add(lp.real, lp.imag, pl / ph, 0.0)
    return _dd_add(a.real, a.imag, -lp.real, -lp.imag)


def _lgamma_pair(x: float) -> complex:
    """lgamma x as hi + lo for finite x, not 0 nor a negative integer."""
    if x > 0.0:
        return _lgamma_pos(x, 0.0)
    # reflection: lgamma x = log pi - log|sin(pi x)| - lgamma(1 - x)
    s = abs(_sinpi(x))
    ls = _log_pair(s)
    one = _two_sum(1.0, -x)
    g = _lgamma_pos(one.real, one.imag)
    a = _dd_add(_LN_PI_H, _LN_PI_L, -ls.real, -ls.imag)
    return _dd_add(a.real, a.imag, -g.real, -g.imag)


def lgamma(x: float) -> float:
    if x != x:
        return x
    if abs(x) == _INF:
        return _INF
    if x <= 0.0 and math.fmod(x, 1.0) == 0.0:
        return _INF
    if abs(x) < 5.551115123125783e-17:
        return -_log_pair(abs(x)).real
    return _lgamma_pair(x).real


def tgamma(x: float) -> float:
    if x != x or x == _INF:
        return x
    if x == 0.0:
        return math.copysign(_INF, x)
    if x < 0.0 and (x == -_INF or math.fmod(x, 1.0) == 0.0):
        return math.nan
    if x > 171.7:
        return _INF
    if abs(x) < 5.551115123125783e-17:
        return 1.0 / x
    lg = _lgamma_pair(x)
    r = _exp_scaled(lg.real, lg.imag)
    if x < 0.0 and _sinpi(x) < 0.0:
        return -r
    return r
