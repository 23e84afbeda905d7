/* passes/lower_builtins.c: the lowering of builtins (abs, min, max, len,
 * int, float, bool, complex, round, conjugate, NumPy scalar constructors
 * such as np.float32), math-module functions with
 * CPython's error rules, powers, and complex products and quotients.
 *
 * Weak (Python-scalar) operations follow CPython 3.11 operation by
 * operation so results are bit-identical, including its exceptions; strong
 * (NumPy-typed) ones follow NumPy's algorithms and IEEE results.
 */
#include <math.h>
#include <stdio.h>

#include "lower.h"

/* Python's math.pi as CPython spells it (Py_MATH_PI). */
#define PY_PI 3.14159265358979323846

static const KlType *
part_of(Lower *L, int32_t z)
{
    return kl_type_float(kl_lw_type(L, z)->bits / 2);
}

/* x op y on one float type (short names keep the formulas readable). */
static int32_t
fp_add(Lower *L, int32_t x, int32_t y)
{
    return kl_lw_bin(L, KL_OP_add, x, y);
}

static int32_t
fp_sub(Lower *L, int32_t x, int32_t y)
{
    return kl_lw_bin(L, KL_OP_sub, x, y);
}

static int32_t
fp_mul(Lower *L, int32_t x, int32_t y)
{
    return kl_lw_bin(L, KL_OP_mul, x, y);
}

static int32_t
fp_div(Lower *L, int32_t x, int32_t y)
{
    return kl_lw_bin(L, KL_OP_div, x, y);
}

static int32_t
cmpf(Lower *L, KlCmp c, int32_t x, int32_t y)
{
    return kl_lw_cmp(L, c, x, y);
}

/* Raises the first of n (condition, kind, message) triples that holds
 * when `bad` holds; the last entry's condition is ignored (it is the
 * remaining case).  Continues in a new block when `bad` is false. */
typedef struct ErrCase {
    int32_t cond;
    KlExcKind kind;
    const char *msg;
} ErrCase;

static int
raise_cases(Lower *L, int32_t bad, int n, const ErrCase *cases)
{
    int32_t badb;
    if (kl_lw_guard(L, kl_lw_not(L, bad), &badb) < 0) {
        return -1;
    }
    int32_t cont = L->cur;
    L->cur = badb;
    for (int i = 0; i < n - 1; i++) {
        if (kl_lw_float_check(L, kl_lw_not(L, cases[i].cond),
                              cases[i].kind, cases[i].msg) < 0) {
            return -1;
        }
    }
    if (kl_lw_raise(L, cases[n - 1].kind, cases[n - 1].msg, 0, NULL) < 0) {
        return -1;
    }
    L->f->insts[kl_block_term(L->f, L->cur)].aux = 1;  /* deferrable */
    L->cur = cont;
    return 0;
}

/* ---- complex arithmetic ------------------------------------------------ */

/* (ar + ai j) * (br + bi j) as CPython's _Py_c_prod (NumPy's loop uses the
 * same formula). */
static int32_t
cprod_parts(Lower *L, const KlType *ct, int32_t ar, int32_t ai, int32_t br,
            int32_t bi)
{
    int32_t re = fp_sub(L, fp_mul(L, ar, br), fp_mul(L, ai, bi));
    int32_t im = fp_add(L, fp_mul(L, ar, bi), fp_mul(L, ai, br));
    return kl_lw_cmake(L, ct, re, im);
}

int32_t
kl_lw_cmul(Lower *L, int32_t a, int32_t b)
{
    if (a < 0 || b < 0) {
        return -1;
    }
    return cprod_parts(L, kl_lw_type(L, a), kl_lw_re(L, a), kl_lw_im(L, a),
                       kl_lw_re(L, b), kl_lw_im(L, b));
}

/* CPython's _Py_c_quot (Smith's method, by cases); a zero divisor raises
 * ZeroDivisionError(zero_msg). */
static int32_t
cdiv_cpython(Lower *L, int32_t a, int32_t b, const char *zero_msg)
{
    const KlType *p = part_of(L, a);
    int32_t ar = kl_lw_re(L, a), ai = kl_lw_im(L, a);
    int32_t br = kl_lw_re(L, b), bi = kl_lw_im(L, b);
    int32_t zero = kl_lw_cf(L, p, 0.0);
    int32_t nonzero = kl_lw_or(L, cmpf(L, KL_CMP_NE, br, zero),
                               cmpf(L, KL_CMP_NE, bi, zero));
    if (kl_lw_check(L, nonzero, KL_EXC_ZERODIV, zero_msg, 0, NULL) < 0) {
        return -1;
    }
    int32_t abr = kl_lw_math1(L, KL_MATH_fabs, br);
    int32_t abi = kl_lw_math1(L, KL_MATH_fabs, bi);
    int32_t c1 = cmpf(L, KL_CMP_GE, abr, abi);
    int32_t c2 = cmpf(L, KL_CMP_GE, abi, abr);
    /* divide through by b.real */
    int32_t ratio = fp_div(L, bi, br);
    int32_t denom = fp_add(L, br, fp_mul(L, bi, ratio));
    int32_t r1 = fp_div(L, fp_add(L, ar, fp_mul(L, ai, ratio)), denom);
    int32_t i1 = fp_div(L, fp_sub(L, ai, fp_mul(L, ar, ratio)), denom);
    /* divide through by b.imag */
    int32_t ratio2 = fp_div(L, br, bi);
    int32_t denom2 = fp_add(L, fp_mul(L, br, ratio2), bi);
    int32_t r2 = fp_div(L, fp_add(L, fp_mul(L, ar, ratio2), ai), denom2);
    int32_t i2 = fp_div(L, fp_sub(L, fp_mul(L, ai, ratio2), ar), denom2);
    /* neither comparison holds: b has a NaN part */
    int32_t nan = kl_lw_cf(L, p, NAN);
    int32_t re = kl_lw_sel(L, c1, r1, kl_lw_sel(L, c2, r2, nan));
    int32_t im = kl_lw_sel(L, c1, i1, kl_lw_sel(L, c2, i2, nan));
    return kl_lw_cmake(L, kl_lw_type(L, a), re, im);
}

/* NumPy's complex division loop: Smith's method scaled by a reciprocal,
 * and a zero divisor giving IEEE infinities / NaNs. */
static int32_t
cdiv_numpy(Lower *L, int32_t a, int32_t b)
{
    const KlType *p = part_of(L, a);
    int32_t ar = kl_lw_re(L, a), ai = kl_lw_im(L, a);
    int32_t br = kl_lw_re(L, b), bi = kl_lw_im(L, b);
    int32_t zero = kl_lw_cf(L, p, 0.0), one = kl_lw_cf(L, p, 1.0);
    int32_t abr = kl_lw_math1(L, KL_MATH_fabs, br);
    int32_t abi = kl_lw_math1(L, KL_MATH_fabs, bi);
    int32_t c1 = cmpf(L, KL_CMP_GE, abr, abi);
    int32_t bz = kl_lw_and(L, cmpf(L, KL_CMP_EQ, abr, zero),
                           cmpf(L, KL_CMP_EQ, abi, zero));
    int32_t zr = fp_div(L, ar, abr), zi = fp_div(L, ai, abr);
    int32_t rat = fp_div(L, bi, br);
    int32_t scl = fp_div(L, one, fp_add(L, br, fp_mul(L, bi, rat)));
    int32_t r1 = fp_mul(L, fp_add(L, ar, fp_mul(L, ai, rat)), scl);
    int32_t i1 = fp_mul(L, fp_sub(L, ai, fp_mul(L, ar, rat)), scl);
    int32_t rat2 = fp_div(L, br, bi);
    int32_t scl2 = fp_div(L, one, fp_add(L, bi, fp_mul(L, br, rat2)));
    int32_t r2 = fp_mul(L, fp_add(L, fp_mul(L, ar, rat2), ai), scl2);
    int32_t i2 = fp_mul(L, fp_sub(L, fp_mul(L, ai, rat2), ar), scl2);
    int32_t re = kl_lw_sel(L, c1, kl_lw_sel(L, bz, zr, r1), r2);
    int32_t im = kl_lw_sel(L, c1, kl_lw_sel(L, bz, zi, i1), i2);
    return kl_lw_cmake(L, kl_lw_type(L, a), re, im);
}

int32_t
kl_lw_cdiv(Lower *L, int32_t a, int32_t b, int weak, const char *zero_msg)
{
    if (a < 0 || b < 0) {
        return -1;
    }
    return weak ? cdiv_cpython(L, a, b, zero_msg) : cdiv_numpy(L, a, b);
}

/* x ** n for a constant n >= 1 by CPython's c_powu: binary powering
 * starting from 1 + 0j, every product spelled out. */
static int32_t
cpowu(Lower *L, int32_t x, int64_t n)
{
    const KlType *ct = kl_lw_type(L, x);
    const KlType *p = part_of(L, x);
    int32_t r = kl_lw_cmake(L, ct, kl_lw_cf(L, p, 1.0), kl_lw_cf(L, p, 0.0));
    int32_t pw = x;
    for (int64_t mask = 1; mask <= n; mask <<= 1) {
        if (n & mask) {
            r = kl_lw_cmul(L, r, pw);
        }
        if ((mask << 1) <= n) {
            pw = kl_lw_cmul(L, pw, pw);
        }
    }
    return r;
}

/* Two-way choice on bool c: emits then(L, ctx) in one block and
 * other(L, ctx) in another, both producing a value of type t, and
 * continues in a join block whose param is the chosen value. */
typedef int32_t (*Arm)(Lower *L, const int32_t *ctx);

static int32_t
choose(Lower *L, int32_t c, const KlType *t, Arm then, Arm other,
       const int32_t *ctx)
{
    KlFunc *f = L->f;
    int32_t tb = kl_lw_block(L), eb = kl_lw_block(L), join = kl_lw_block(L);
    if (c < 0 || tb < 0 || eb < 0 || join < 0
        || kl_branch(f, L->cur, c, tb, eb, L->line) < 0) {
        return -1;
    }
    int32_t r = kl_bparam_add(f, join, t);
    Arm arms[2] = {then, other};
    int32_t blocks[2] = {tb, eb};
    for (int i = 0; i < 2; i++) {
        L->cur = blocks[i];
        int32_t v = arms[i](L, ctx);
        if (v < 0 || kl_jump(f, L->cur, join, 1, &v, L->line) < 0) {
            return -1;
        }
    }
    L->cur = join;
    return r;
}

/* CPython's c_powu for a run-time exponent n >= 0 (int64): the loop
 * `while n >= mask: if n & mask: r *= p; mask <<= 1; p *= p`. */
static int32_t
cpowu_loop(Lower *L, int32_t x, int32_t n)
{
    KlFunc *f = L->f;
    const KlType *ct = kl_lw_type(L, x);
    const KlType *p = part_of(L, x);
    int32_t head = kl_lw_block(L), body = kl_lw_block(L);
    int32_t exit = kl_lw_block(L);
    if (head < 0 || body < 0 || exit < 0) {
        return -1;
    }
    int32_t lp = kl_loop_new(f, head, body, exit, L->loop, 0);
    int32_t r0 = kl_bparam_add(f, head, ct);
    int32_t p0 = kl_bparam_add(f, head, ct);
    int32_t m0 = kl_bparam_add(f, head, kl_i64);
    int32_t init[3] = {kl_lw_cmake(L, ct, kl_lw_cf(L, p, 1.0),
                                   kl_lw_cf(L, p, 0.0)), x,
                       kl_lw_ci(L, kl_i64, 1)};
    if (lp < 0 || r0 < 0 || p0 < 0 || m0 < 0 || init[0] < 0 || init[2] < 0
        || kl_jump(f, L->cur, head, 3, init, L->line) < 0) {
        return -1;
    }
    f->blocks[head].loop = lp;
    f->blocks[body].loop = lp;
    L->cur = head;
    int32_t more = kl_lw_cmp(L, KL_CMP_GE, n, m0);
    if (more < 0 || kl_branch(f, head, more, body, exit, L->line) < 0) {
        return -1;
    }
    L->cur = body;
    int32_t bit = kl_lw_cmp(L, KL_CMP_NE, kl_lw_bin(L, KL_OP_and, n, m0),
                            kl_lw_ci(L, kl_i64, 0));
    int32_t next[3];
    next[0] = kl_lw_sel(L, bit, kl_lw_cmul(L, r0, p0), r0);
    next[1] = kl_lw_cmul(L, p0, p0);
    next[2] = kl_lw_bin(L, KL_OP_shl, m0, kl_lw_ci(L, kl_i64, 1));
    if (next[0] < 0 || next[1] < 0 || next[2] < 0
        || kl_jump(f, body, head, 3, next, L->line) < 0) {
        return -1;
    }
    L->cur = exit;
    return r0;
}

/* Arms of kl_lw_cpow's run-time choices; ctx = {base a, exponent b,
 * integer exponent n}. */
static int32_t
arm_recip(Lower *L, const int32_t *ctx)
{
    const KlType *ct = kl_lw_type(L, ctx[0]);
    const KlType *p = part_of(L, ctx[0]);
    int32_t one = kl_lw_cmake(L, ct, kl_lw_cf(L, p, 1.0), kl_lw_cf(L, p, 0.0));
    int32_t neg = kl_lw_bin(L, KL_OP_sub, kl_lw_ci(L, kl_i64, 0), ctx[2]);
    return kl_lw_cdiv(L, one, cpowu_loop(L, ctx[0], neg), 1,
                      "0.0 to a negative or complex power");
}

static int32_t
arm_powu(Lower *L, const int32_t *ctx)
{
    return cpowu_loop(L, ctx[0], ctx[2]);
}

/* c_powi: the exponent is integral with |n| <= 100. */
static int32_t
arm_powi(Lower *L, const int32_t *ctx)
{
    int32_t c[3] = {ctx[0], ctx[1], -1};
    c[2] = kl_lw_conv(L, kl_lw_re(L, ctx[1]), kl_i64);
    int32_t neg = kl_lw_cmp(L, KL_CMP_LT, c[2], kl_lw_ci(L, kl_i64, 0));
    return choose(L, neg, kl_lw_type(L, ctx[0]), arm_recip, arm_powu, c);
}

/* CPython's _Py_c_pow (polar form); *edom receives the bool "0 raised to
 * a negative or complex power". */
static int32_t
cpow_general(Lower *L, int32_t a, int32_t b, int32_t *edom)
{
    const KlType *ct = kl_lw_type(L, a);
    const KlType *p = part_of(L, a);
    int32_t ar = kl_lw_re(L, a), ai = kl_lw_im(L, a);
    int32_t br = kl_lw_re(L, b), bi = kl_lw_im(L, b);
    int32_t zero = kl_lw_cf(L, p, 0.0), one = kl_lw_cf(L, p, 1.0);
    int32_t bz = kl_lw_and(L, cmpf(L, KL_CMP_EQ, br, zero),
                           cmpf(L, KL_CMP_EQ, bi, zero));
    int32_t az = kl_lw_and(L, cmpf(L, KL_CMP_EQ, ar, zero),
                           cmpf(L, KL_CMP_EQ, ai, zero));
    int32_t bim = cmpf(L, KL_CMP_NE, bi, zero);
    int32_t vabs = kl_lw_math2(L, KL_MATH_hypot, ar, ai);
    int32_t len = kl_lw_math2(L, KL_MATH_pow, vabs, br);
    int32_t at = kl_lw_math2(L, KL_MATH_atan2, ai, ar);
    int32_t phase = fp_mul(L, at, br);
    int32_t len2 = fp_div(L, len, kl_lw_math1(L, KL_MATH_exp, fp_mul(L, at, bi)));
    int32_t phase2 = fp_add(L, phase,
                          fp_mul(L, bi, kl_lw_math1(L, KL_MATH_log, vabs)));
    len = kl_lw_sel(L, bim, len2, len);
    phase = kl_lw_sel(L, bim, phase2, phase);
    int32_t re = fp_mul(L, len, kl_lw_math1(L, KL_MATH_cos, phase));
    int32_t im = fp_mul(L, len, kl_lw_math1(L, KL_MATH_sin, phase));
    re = kl_lw_sel(L, bz, one, kl_lw_sel(L, az, zero, re));
    im = kl_lw_sel(L, bz, zero, kl_lw_sel(L, az, zero, im));
    /* CPython reads errno: EDOM comes from 0 ** (negative or complex),
     * and also leaks from cos/sin of an infinite phase */
    int32_t zpow = kl_lw_and(L, az, kl_lw_or(L, bim,
                                             cmpf(L, KL_CMP_LT, br, zero)));
    int32_t trig = kl_lw_and(L, kl_lw_not(L, az), kl_lw_isinf(L, phase));
    *edom = kl_lw_and(L, kl_lw_not(L, bz), kl_lw_or(L, zpow, trig));
    return kl_lw_cmake(L, ct, re, im);
}

/* Integer value of a constant exponent usable by CPython's c_powi
 * (integral, |n| <= 100); 1 when found. */
static int
small_int_exponent(const KlInst *c, int64_t *n)
{
    if (c == NULL || c->op != KL_OP_const || c->type == NULL) {
        return 0;
    }
    double x;
    switch (c->type->kind) {
    case KL_T_BOOL:
    case KL_T_INT:
        if (c->imm.i < -100 || c->imm.i > 100) {
            return 0;
        }
        *n = c->imm.i;
        return 1;
    case KL_T_FLOAT:
        x = c->imm.f;
        break;
    case KL_T_COMPLEX:
        if (c->imm.c.im != 0.0) {
            return 0;
        }
        x = c->imm.c.re;
        break;
    default:
        return 0;
    }
    if (x != floor(x) || fabs(x) > 100.0) {
        return 0;
    }
    *n = (int64_t)x;
    return 1;
}

int32_t
kl_lw_cpow(Lower *L, int32_t a, int32_t b, int weak, const KlInst *bconst)
{
    if (a < 0 || b < 0) {
        return -1;
    }
    const KlType *ct = kl_lw_type(L, a);
    if (!weak && ct->bits == 64) {
        /* complex64: computed in double precision, rounded once */
        int32_t r = kl_lw_cpow(L, kl_lw_conv(L, a, kl_c128),
                               kl_lw_conv(L, b, kl_c128), 0, bconst);
        return kl_lw_conv(L, r, ct);
    }
    const KlType *p = part_of(L, a);
    const char *edom_msg = "0.0 to a negative or complex power";
    int64_t n;
    int32_t r, edom = -1;
    if (small_int_exponent(bconst, &n)) {
        if (n == 0) {
            return kl_lw_cmake(L, ct, kl_lw_cf(L, p, 1.0), kl_lw_cf(L, p, 0.0));
        }
        if (n > 0) {
            r = cpowu(L, a, n);
        }
        else {
            int32_t one = kl_lw_cmake(L, ct, kl_lw_cf(L, p, 1.0),
                                      kl_lw_cf(L, p, 0.0));
            /* CPython's quotient for NumPy complex too: one algorithm */
            r = kl_lw_cdiv(L, one, cpowu(L, a, -n), 1, edom_msg);
        }
    }
    else {
        /* CPython takes c_powi whenever the exponent's value is an
         * integer with |n| <= 100, decided at run time */
        int32_t br = kl_lw_re(L, b), bi = kl_lw_im(L, b);
        int32_t integral = kl_lw_and(
            L, kl_lw_and(L, cmpf(L, KL_CMP_EQ, bi, kl_lw_cf(L, p, 0.0)),
                         cmpf(L, KL_CMP_EQ, br,
                              kl_lw_math1(L, KL_MATH_floor, br))),
            cmpf(L, KL_CMP_LE, kl_lw_math1(L, KL_MATH_fabs, br),
                 kl_lw_cf(L, p, 100.0)));
        int32_t ctx[3] = {a, b, -1};
        int32_t tb = kl_lw_block(L), eb = kl_lw_block(L);
        int32_t join = kl_lw_block(L);
        if (integral < 0 || tb < 0 || eb < 0 || join < 0
            || kl_branch(L->f, L->cur, integral, tb, eb, L->line) < 0) {
            return -1;
        }
        int32_t rj = kl_bparam_add(L->f, join, ct);
        int32_t ej = kl_bparam_add(L->f, join, kl_bool);
        L->cur = tb;
        int32_t out[2] = {arm_powi(L, ctx), kl_lw_ci(L, kl_bool, 0)};
        if (out[0] < 0 || out[1] < 0
            || kl_jump(L->f, L->cur, join, 2, out, L->line) < 0) {
            return -1;
        }
        L->cur = eb;
        out[0] = cpow_general(L, a, b, &out[1]);
        if (out[0] < 0 || out[1] < 0
            || kl_jump(L->f, L->cur, join, 2, out, L->line) < 0) {
            return -1;
        }
        L->cur = join;
        r = rj;
        edom = ej;
    }
    if (!weak || r < 0) {
        return r;
    }
    int32_t inf = kl_lw_or(L, kl_lw_isinf(L, kl_lw_re(L, r)),
                           kl_lw_isinf(L, kl_lw_im(L, r)));
    if (edom < 0) {
        ErrCase c[1] = {{inf, KL_EXC_OVERFLOW, "complex exponentiation"}};
        return raise_cases(L, inf, 1, c) < 0 ? -1 : r;
    }
    ErrCase c[2] = {{edom, KL_EXC_ZERODIV, edom_msg},
                    {inf, KL_EXC_OVERFLOW, "complex exponentiation"}};
    return raise_cases(L, kl_lw_or(L, edom, inf), 2, c) < 0 ? -1 : r;
}

/* ---- real powers ------------------------------------------------------ */

int32_t
kl_lw_ipow(Lower *L, int32_t a, int32_t b)
{
    if (a < 0 || b < 0) {
        return -1;
    }
    KlFunc *f = L->f;
    const KlType *t = kl_lw_type(L, a);
    int32_t zero = kl_lw_ci(L, t, 0);
    int64_t k;
    int known = kl_lw_const_int(L, b, &k);
    if (t->is_signed && !(known && k >= 0)) {
        if (kl_lw_check(L, kl_lw_cmp(L, KL_CMP_GE, b, zero), KL_EXC_VALUE,
                        "kiln: integers to negative integer powers are not "
                        "supported", 0, NULL) < 0) {
            return -1;
        }
    }
    if (known && k >= 0 && k <= 64) {
        /* wrapping products commute, so any square-and-multiply order
         * gives the loop's result */
        int32_t r = -1, pw = a;
        for (; k > 0; k >>= 1) {
            if (k & 1) {
                r = r < 0 ? pw : kl_lw_bin(L, KL_OP_mul, r, pw);
            }
            if (k > 1) {
                pw = kl_lw_bin(L, KL_OP_mul, pw, pw);
            }
        }
        return r < 0 ? kl_lw_ci(L, t, 1) : r;
    }
    /* loop: while e != 0: if e & 1: r *= p; p *= p; e >>= 1 */
    int32_t head = kl_lw_block(L), body = kl_lw_block(L);
    int32_t exit = kl_lw_block(L);
    if (head < 0 || body < 0 || exit < 0) {
        return -1;
    }
    int32_t lp = kl_loop_new(f, head, body, exit, L->loop, 0);
    int32_t r0 = kl_bparam_add(f, head, t);
    int32_t p0 = kl_bparam_add(f, head, t);
    int32_t e0 = kl_bparam_add(f, head, t);
    int32_t init[3] = {kl_lw_ci(L, t, 1), a, b};
    if (lp < 0 || r0 < 0 || p0 < 0 || e0 < 0 || init[0] < 0
        || kl_jump(f, L->cur, head, 3, init, L->line) < 0) {
        return -1;
    }
    f->blocks[head].loop = lp;
    f->blocks[body].loop = lp;
    L->cur = head;
    int32_t more = kl_lw_cmp(L, KL_CMP_NE, e0, zero);
    if (more < 0 || kl_branch(f, head, more, body, exit, L->line) < 0) {
        return -1;
    }
    L->cur = body;
    int32_t odd = kl_lw_cmp(L, KL_CMP_NE,
                            kl_lw_bin(L, KL_OP_and, e0, kl_lw_ci(L, t, 1)),
                            zero);
    int32_t next[3];
    next[0] = kl_lw_sel(L, odd, kl_lw_bin(L, KL_OP_mul, r0, p0), r0);
    next[1] = kl_lw_bin(L, KL_OP_mul, p0, p0);
    next[2] = kl_lw_bin(L, KL_OP_shr, e0, kl_lw_ci(L, t, 1));
    if (next[0] < 0 || next[1] < 0 || next[2] < 0
        || kl_jump(f, body, head, 3, next, L->line) < 0) {
        return -1;
    }
    L->cur = exit;
    return r0;
}

int32_t
kl_lw_fpow(Lower *L, int32_t a, int32_t b, int weak)
{
    int32_t r = kl_lw_math2(L, KL_MATH_pow, a, b);
    if (!weak || r < 0) {
        return r;
    }
    /* CPython's float_pow: the cases it answers itself agree with C99
     * pow; what remains are its three errors */
    const KlType *t = kl_lw_type(L, a);
    int32_t zero = kl_lw_cf(L, t, 0.0), ninf = kl_lw_cf(L, t, -INFINITY);
    int32_t z = kl_lw_and(L, kl_lw_and(L, cmpf(L, KL_CMP_EQ, a, zero),
                                       cmpf(L, KL_CMP_LT, b, zero)),
                          cmpf(L, KL_CMP_GT, b, ninf));
    int32_t frac = kl_lw_and(L, cmpf(L, KL_CMP_EQ, b, b),
                             cmpf(L, KL_CMP_NE, b,
                                  kl_lw_math1(L, KL_MATH_floor, b)));
    int32_t nf = kl_lw_and(L, kl_lw_and(L, cmpf(L, KL_CMP_LT, a, zero),
                                        cmpf(L, KL_CMP_GT, a, ninf)), frac);
    int32_t ov = kl_lw_and(L, kl_lw_isinf(L, r),
                           kl_lw_and(L, kl_lw_isfinite(L, a),
                                     kl_lw_isfinite(L, b)));
    ErrCase c[3] = {
        {z, KL_EXC_ZERODIV, "0.0 cannot be raised to a negative power"},
        {nf, KL_EXC_VALUE, "kiln: negative number to a fractional power "
                           "(CPython returns complex)"},
        {ov, KL_EXC_OVERFLOW, "(34, 'Numerical result out of range')"},
    };
    return raise_cases(L, kl_lw_or(L, z, kl_lw_or(L, nf, ov)), 3, c) < 0
           ? -1 : r;
}

/* ---- math module -------------------------------------------------------- */

/* How CPython's mathmodule reports a one-argument function's failures. */
typedef enum MathErr {
    ME_NONE,        /* never raises (erf, erfc, fabs of finite, ...) */
    ME_DOMAIN,      /* math_1 without overflow: NaN or inf from finite */
    ME_OVERFLOW,    /* math_1 with can_overflow: inf -> OverflowError */
    ME_GAMMA,       /* gamma / lgamma: poles are domain errors */
} MathErr;

/* r = fn(x) on float64 with CPython's checks. */
static int32_t
math1_checked(Lower *L, KlMathFn fn, int32_t x, MathErr err)
{
    int32_t r = kl_lw_math1(L, fn, x);
    if (err == ME_NONE || r < 0) {
        return r;
    }
    const char *dom = "math domain error", *rng = "math range error";
    if (fn == KL_MATH_sqrt) {
        /* the only error: a negative argument (-0.0 and NaN pass) */
        int32_t neg = cmpf(L, KL_CMP_LT, x, kl_lw_cf(L, kl_f64, 0.0));
        return kl_lw_float_check(L, kl_lw_not(L, neg), KL_EXC_VALUE,
                                 dom) < 0 ? -1 : r;
    }
    if (fn == KL_MATH_exp || fn == KL_MATH_exp2 || fn == KL_MATH_expm1) {
        /* the only error: +inf from a finite argument (overflow) */
        int32_t inf = kl_lw_cf(L, kl_f64, INFINITY);
        int32_t ovf = kl_lw_and(L, cmpf(L, KL_CMP_EQ, r, inf),
                                cmpf(L, KL_CMP_LT, x, inf));
        return kl_lw_float_check(L, kl_lw_not(L, ovf), KL_EXC_OVERFLOW,
                                 rng) < 0 ? -1 : r;
    }
    int32_t nan = kl_lw_and(L, kl_lw_isnan(L, r),
                            kl_lw_not(L, kl_lw_isnan(L, x)));
    int32_t inf = kl_lw_and(L, kl_lw_isinf(L, r), kl_lw_isfinite(L, x));
    int32_t bad = kl_lw_or(L, nan, inf);
    if (err == ME_DOMAIN) {
        return kl_lw_float_check(L, kl_lw_not(L, bad), KL_EXC_VALUE,
                                 dom) < 0 ? -1 : r;
    }
    int32_t domain = nan;
    if (err == ME_GAMMA) {
        /* a pole: zero or a negative integer */
        int32_t pole = kl_lw_and(L, cmpf(L, KL_CMP_LE, x, kl_lw_cf(L, kl_f64,
                                                                   0.0)),
                                 cmpf(L, KL_CMP_EQ, x,
                                      kl_lw_math1(L, KL_MATH_floor, x)));
        domain = kl_lw_or(L, nan, pole);
    }
    ErrCase c[2] = {{domain, KL_EXC_VALUE, dom},
                    {inf, KL_EXC_OVERFLOW, rng}};
    return raise_cases(L, bad, 2, c) < 0 ? -1 : r;
}

/* math.pow(x, y): CPython's math_pow errors on top of C99 pow. */
static int32_t
math_pow(Lower *L, int32_t x, int32_t y)
{
    int32_t r = kl_lw_math2(L, KL_MATH_pow, x, y);
    int32_t fin = kl_lw_and(L, kl_lw_isfinite(L, x), kl_lw_isfinite(L, y));
    int32_t nan = kl_lw_and(L, fin, kl_lw_isnan(L, r));
    int32_t inf = kl_lw_and(L, fin, kl_lw_isinf(L, r));
    int32_t domain = kl_lw_or(L, nan,
                              kl_lw_and(L, inf, cmpf(L, KL_CMP_EQ, x,
                                                     kl_lw_cf(L, kl_f64,
                                                              0.0))));
    ErrCase c[2] = {{domain, KL_EXC_VALUE, "math domain error"},
                    {inf, KL_EXC_OVERFLOW, "math range error"}};
    return raise_cases(L, kl_lw_or(L, nan, inf), 2, c) < 0 ? -1 : r;
}

/* A two-argument function whose NaN result from non-NaN arguments is a
 * domain error (math.fmod). */
static int32_t
math2_domain(Lower *L, KlMathFn fn, int32_t x, int32_t y)
{
    int32_t r = kl_lw_math2(L, fn, x, y);
    int32_t bad = kl_lw_and(L, kl_lw_isnan(L, r),
                            kl_lw_not(L, kl_lw_or(L, kl_lw_isnan(L, x),
                                                  kl_lw_isnan(L, y))));
    return kl_lw_float_check(L, kl_lw_not(L, bad), KL_EXC_VALUE,
                             "math domain error") < 0 ? -1 : r;
}

/* The libm function and error rule of a one-argument math builtin;
 * 0 when b is not one. */
static int
math1_of(KlBuiltin b, KlMathFn *fn, MathErr *err)
{
    static const struct {
        KlBuiltin b;
        MathErr err;
    } table[] = {
        {KL_BI_sqrt, ME_DOMAIN}, {KL_BI_sin, ME_DOMAIN},
        {KL_BI_cos, ME_DOMAIN}, {KL_BI_tan, ME_DOMAIN},
        {KL_BI_asin, ME_DOMAIN}, {KL_BI_acos, ME_DOMAIN},
        {KL_BI_atan, ME_DOMAIN}, {KL_BI_sinh, ME_OVERFLOW},
        {KL_BI_cosh, ME_OVERFLOW}, {KL_BI_tanh, ME_DOMAIN},
        {KL_BI_asinh, ME_DOMAIN}, {KL_BI_acosh, ME_DOMAIN},
        {KL_BI_atanh, ME_DOMAIN}, {KL_BI_exp, ME_OVERFLOW},
        {KL_BI_exp2, ME_OVERFLOW}, {KL_BI_expm1, ME_OVERFLOW},
        {KL_BI_log, ME_DOMAIN}, {KL_BI_log2, ME_DOMAIN},
        {KL_BI_log10, ME_DOMAIN}, {KL_BI_log1p, ME_DOMAIN},
        {KL_BI_fabs, ME_DOMAIN}, {KL_BI_erf, ME_NONE},
        {KL_BI_erfc, ME_NONE}, {KL_BI_gamma, ME_GAMMA},
        {KL_BI_lgamma, ME_GAMMA},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (table[i].b == b) {
            *fn = (KlMathFn)kl_builtin_math(b);
            *err = table[i].err;
            return 1;
        }
    }
    return 0;
}

/* ---- builtins ----------------------------------------------------------- */

static int
arity_error(Lower *L, KlBuiltin b, int32_t n)
{
    return kl_compile_error(L->d, L->line, "%s() does not take %d arguments",
                            kl_builtin_pyname(b), n);
}

/* Old argument i of builtin instruction `in`: its type and new value. */
static const KlType *
arg_type(Lower *L, const KlInst *in, int i)
{
    return L->oi[in->args[i]].type;
}

static int32_t
arg_val(Lower *L, const KlInst *in, int i)
{
    int32_t v = L->vmap[in->args[i]];
    if (v < 0) {
        kl_internal_error(L->d, "lower: builtin operand %%%d has no value",
                          in->args[i]);
    }
    return v;
}

/* Argument i converted to float64 (math functions); complex refused. */
static int32_t
real_arg(Lower *L, const KlInst *in, int i)
{
    const KlType *t = arg_type(L, in, i);
    if (!kl_type_is_scalar(t) || t->kind == KL_T_COMPLEX) {
        return kl_compile_error(L->d, L->line, "%s() needs a real number, "
                                "not %s", kl_builtin_pyname(in->aux),
                                t->name);
    }
    return kl_lw_conv(L, arg_val(L, in, i), kl_f64);
}

static int32_t
lower_abs(Lower *L, const KlInst *in, const KlType *s)
{
    const KlType *t = arg_type(L, in, 0);
    int32_t x = arg_val(L, in, 0);
    if (t->kind == KL_T_COMPLEX) {
        int32_t re = kl_lw_re(L, x), im = kl_lw_im(L, x);
        int32_t r = kl_lw_math2(L, KL_MATH_hypot, re, im);
        if (t->weak) {
            int32_t bad = kl_lw_and(L, kl_lw_isinf(L, r),
                                    kl_lw_and(L, kl_lw_isfinite(L, re),
                                              kl_lw_isfinite(L, im)));
            if (kl_lw_float_check(L, kl_lw_not(L, bad), KL_EXC_OVERFLOW,
                                  "absolute value too large") < 0) {
                return -1;
            }
        }
        return kl_lw_conv(L, r, s);
    }
    x = kl_lw_conv(L, x, s);
    if (s->kind == KL_T_FLOAT) {
        return kl_lw_math1(L, KL_MATH_fabs, x);
    }
    if (s->kind == KL_T_INT && s->is_signed) {
        int32_t neg = kl_lw_cmp(L, KL_CMP_LT, x, kl_lw_ci(L, s, 0));
        return kl_lw_sel(L, neg, kl_lw_e1(L, KL_OP_neg, s, x), x);
    }
    return x;
}

/* min / max: CPython's sequential rule (the current item is replaced only
 * by a strictly smaller / greater one). */
static int32_t
lower_minmax(Lower *L, const KlInst *in, const KlType *s, int is_max)
{
    if (in->nargs < 2) {
        return kl_compile_error(L->d, L->line, "%s() needs at least two "
                                "scalar arguments", is_max ? "max" : "min");
    }
    if (s->kind == KL_T_COMPLEX || !kl_type_is_scalar(s)) {
        return kl_compile_error(L->d, L->line, "%s() of %s is not supported",
                                is_max ? "max" : "min", s->name);
    }
    int32_t cur = kl_lw_conv(L, arg_val(L, in, 0), s);
    for (int32_t i = 1; i < in->nargs; i++) {
        int32_t x = kl_lw_conv(L, arg_val(L, in, i), s);
        int32_t better = kl_lw_cmp(L, is_max ? KL_CMP_GT : KL_CMP_LT, x, cur);
        cur = kl_lw_sel(L, better, x, cur);
    }
    return cur;
}

/* complex(re[, im]) as CPython's complex_new combines the parts. */
static int32_t
lower_complex(Lower *L, const KlInst *in, const KlType *s)
{
    const KlType *p = kl_type_float(s->bits / 2);
    if (in->nargs == 0) {
        return kl_lw_cmake(L, s, kl_lw_cf(L, p, 0.0), kl_lw_cf(L, p, 0.0));
    }
    if (in->nargs > 2) {
        return arity_error(L, KL_BI_complex, in->nargs);
    }
    int32_t rr, ri = -1, ir, ii = -1;
    int32_t r = arg_val(L, in, 0);
    if (arg_type(L, in, 0)->kind == KL_T_COMPLEX) {
        rr = kl_lw_conv(L, kl_lw_re(L, r), p);
        ri = kl_lw_conv(L, kl_lw_im(L, r), p);
    }
    else {
        rr = kl_lw_conv(L, r, p);
    }
    if (in->nargs == 1) {
        ir = ri >= 0 ? ri : kl_lw_cf(L, p, 0.0);
        return kl_lw_cmake(L, s, rr, ir);
    }
    int32_t i = arg_val(L, in, 1);
    if (arg_type(L, in, 1)->kind == KL_T_COMPLEX) {
        ir = kl_lw_conv(L, kl_lw_re(L, i), p);
        ii = kl_lw_conv(L, kl_lw_im(L, i), p);
    }
    else {
        ir = kl_lw_conv(L, i, p);
    }
    if (ii >= 0) {
        rr = fp_sub(L, rr, ii);
    }
    if (ri >= 0) {
        ir = fp_add(L, ir, ri);
    }
    return kl_lw_cmake(L, s, rr, ir);
}

/* int(x), round(x), math.floor/ceil/trunc(x): weak int64 results; floats
 * go through `fn` (none for int()) and the int() checks. */
static int32_t
to_int(Lower *L, const KlInst *in, int has_fn, KlMathFn fn, int in_f64)
{
    const KlType *t = arg_type(L, in, 0);
    int32_t x = arg_val(L, in, 0);
    if (t->kind == KL_T_INT || t->kind == KL_T_BOOL) {
        return kl_lw_conv(L, x, kl_i64);
    }
    if (t->kind != KL_T_FLOAT) {
        return kl_compile_error(L->d, L->line, "%s() of %s is not supported",
                                kl_builtin_pyname(in->aux), t->name);
    }
    if (in_f64) {
        x = kl_lw_conv(L, x, kl_f64);
    }
    if (has_fn) {
        x = kl_lw_math1(L, fn, x);
    }
    return kl_lw_f2i(L, x, kl_i64);
}

/* Lowers math.* builtins; -2 when b is not a math function. */
static int32_t
lower_math(Lower *L, const KlInst *in, KlBuiltin b)
{
    KlMathFn fn;
    MathErr err;
    int32_t n = in->nargs;
    if (math1_of(b, &fn, &err)) {
        if (b == KL_BI_log && n == 2) {
            int32_t num = math1_checked(L, fn, real_arg(L, in, 0), err);
            int32_t den = math1_checked(L, fn, real_arg(L, in, 1), err);
            int32_t ok = cmpf(L, KL_CMP_NE, den, kl_lw_cf(L, kl_f64, 0.0));
            if (kl_lw_check(L, ok, KL_EXC_ZERODIV, "float division by zero",
                            0, NULL) < 0) {
                return -1;
            }
            return fp_div(L, num, den);
        }
        if (n != 1) {
            return arity_error(L, b, n);
        }
        return math1_checked(L, fn, real_arg(L, in, 0), err);
    }
    int two = b == KL_BI_atan2 || b == KL_BI_pow || b == KL_BI_hypot
              || b == KL_BI_copysign || b == KL_BI_fmod;
    if (two && n != 2) {
        return arity_error(L, b, n);
    }
    switch (b) {
    case KL_BI_atan2:
        return kl_lw_math2(L, KL_MATH_atan2, real_arg(L, in, 0),
                           real_arg(L, in, 1));
    case KL_BI_hypot:
        /* CPython 3.11 returns inf on overflow, without an error */
        return kl_lw_math2(L, KL_MATH_hypot, real_arg(L, in, 0),
                           real_arg(L, in, 1));
    case KL_BI_copysign:
        return kl_lw_math2(L, KL_MATH_copysign, real_arg(L, in, 0),
                           real_arg(L, in, 1));
    case KL_BI_fmod:
        return math2_domain(L, KL_MATH_fmod, real_arg(L, in, 0),
                            real_arg(L, in, 1));
    case KL_BI_pow:
        return math_pow(L, real_arg(L, in, 0), real_arg(L, in, 1));
    default:
        break;
    }
    if (n != 1) {
        return b <= KL_BI_conjugate ? -2 : arity_error(L, b, n);
    }
    switch (b) {
    case KL_BI_floor:
        return to_int(L, in, 1, KL_MATH_floor, 1);
    case KL_BI_ceil:
        return to_int(L, in, 1, KL_MATH_ceil, 1);
    case KL_BI_trunc:
        return to_int(L, in, 1, KL_MATH_trunc, 1);
    case KL_BI_isnan:
        return kl_lw_isnan(L, real_arg(L, in, 0));
    case KL_BI_isinf:
        return kl_lw_isinf(L, real_arg(L, in, 0));
    case KL_BI_isfinite:
        return kl_lw_isfinite(L, real_arg(L, in, 0));
    case KL_BI_degrees:
        return fp_mul(L, real_arg(L, in, 0), kl_lw_cf(L, kl_f64, 180.0 / PY_PI));
    case KL_BI_radians:
        return fp_mul(L, real_arg(L, in, 0), kl_lw_cf(L, kl_f64, PY_PI / 180.0));
    default:
        return -2;
    }
}

/* ---- NumPy scalar constructors ----------------------------------------- */

int32_t
kl_lw_pyint_to_int(Lower *L, int32_t i, const KlType *s)
{
    i = kl_lw_conv(L, i, kl_i64);
    if (s == kl_i64) {
        return i;
    }
    int64_t lo = 0, hi = INT64_MAX;
    if (s->is_signed) {
        lo = -((int64_t)1 << (s->bits - 1));
        hi = ((int64_t)1 << (s->bits - 1)) - 1;
    }
    else if (s->bits < 64) {
        hi = ((int64_t)1 << s->bits) - 1;
    }
    int32_t ok = kl_lw_cmp(L, KL_CMP_GE, i, kl_lw_ci(L, kl_i64, lo));
    if (hi != INT64_MAX) {
        ok = kl_lw_and(L, ok, kl_lw_cmp(L, KL_CMP_LE, i,
                                        kl_lw_ci(L, kl_i64, hi)));
    }
    char msg[96];
    snprintf(msg, sizeof msg, "Python integer %%lld out of bounds for %s",
             s->name);
    if (kl_lw_check(L, ok, KL_EXC_OVERFLOW, msg, 1, &i) < 0) {
        return -1;
    }
    return kl_lw_conv(L, i, s);
}

/* Python float x (float64) as integer type s, as NumPy converts it: int(x)
 * (NaN: ValueError, infinities: OverflowError), then a C long (unsigned
 * long for uint64) or OverflowError, then the range of s. */
static int32_t
pyfloat_to_int(Lower *L, int32_t x, const KlType *s)
{
    const double two63 = 9223372036854775808.0;
    int u64 = s == kl_u64;
    int32_t ok = kl_lw_and(L, cmpf(L, KL_CMP_GE, x, kl_lw_cf(L, kl_f64,
                                                             -two63)),
                           cmpf(L, KL_CMP_LT, x,
                                kl_lw_cf(L, kl_f64, u64 ? 2 * two63 : two63)));
    int32_t bad;
    if (kl_lw_guard(L, ok, &bad) < 0) {
        return -1;
    }
    int32_t cont = L->cur;
    L->cur = bad;
    if (kl_lw_check(L, kl_lw_not(L, kl_lw_isnan(L, x)), KL_EXC_VALUE,
                    "cannot convert float NaN to integer", 0, NULL) < 0
        || kl_lw_check(L, kl_lw_not(L, kl_lw_isinf(L, x)), KL_EXC_OVERFLOW,
                       "cannot convert float infinity to integer", 0,
                       NULL) < 0
        || kl_lw_raise(L, KL_EXC_OVERFLOW, "Python int too large to convert "
                       "to C long", 0, NULL) < 0) {
        return -1;
    }
    L->cur = cont;
    if (!u64) {
        return kl_lw_pyint_to_int(L, kl_lw_e1(L, KL_OP_cast, kl_i64, x), s);
    }
    /* [2**63, 2**64): convert x - 2**63 and set the top bit */
    int32_t h = kl_lw_cf(L, kl_f64, two63);
    int32_t big = cmpf(L, KL_CMP_GE, x, h);
    int32_t i = kl_lw_e1(L, KL_OP_cast, kl_i64,
                         kl_lw_sel(L, big, fp_sub(L, x, h), x));
    int32_t fits = kl_lw_or(L, big, kl_lw_cmp(L, KL_CMP_GE, i,
                                              kl_lw_ci(L, kl_i64, 0)));
    if (kl_lw_check(L, fits, KL_EXC_OVERFLOW, "Python integer %lld out of "
                    "bounds for uint64", 1, &i) < 0) {
        return -1;
    }
    i = kl_lw_sel(L, big, kl_lw_bin(L, KL_OP_xor, i,
                                    kl_lw_ci(L, kl_i64, INT64_MIN)), i);
    return kl_lw_e1(L, KL_OP_cast, s, i);
}

/* Zero of scalar type s (np.float32() and the like). */
static int32_t
zero_of(Lower *L, const KlType *s)
{
    if (s->kind == KL_T_COMPLEX) {
        const KlType *p = kl_type_float(s->bits / 2);
        return kl_lw_cmake(L, s, kl_lw_cf(L, p, 0.0), kl_lw_cf(L, p, 0.0));
    }
    return s->kind == KL_T_FLOAT ? kl_lw_cf(L, s, 0.0) : kl_lw_ci(L, s, 0);
}

/* np.float32(x), np.int8(x), ... (s: the strong type; infer refused
 * arrays, a Python complex to a real type and complex(re, im) parts):
 * NumPy 2's conversions.  Python numbers are checked as NumPy checks them
 * (an int out of range of s raises) and a Python int goes through float64
 * to a float32 part; NumPy scalars and bools are cast as NumPy casts
 * them (integers wrap, complex keeps its real part), floats to ints with
 * kiln's int() checks (kl_lw_conv). */
static int32_t
lower_npscalar(Lower *L, const KlInst *in, const KlType *s)
{
    if (in->nargs == 0) {
        return zero_of(L, s);
    }
    if (in->nargs == 2) {
        /* np.complex64(re, im): each part as Python's float() of it */
        const KlType *p = kl_type_float(s->bits / 2);
        int32_t re = kl_lw_conv(L, real_arg(L, in, 0), p);
        int32_t im = kl_lw_conv(L, real_arg(L, in, 1), p);
        return kl_lw_cmake(L, s, re, im);
    }
    const KlType *t = arg_type(L, in, 0);
    int32_t x = arg_val(L, in, 0);
    if (s->kind == KL_T_BOOL || !t->weak) {
        return kl_lw_conv(L, x, s);
    }
    if (s->kind == KL_T_INT && t->kind == KL_T_INT) {
        return kl_lw_pyint_to_int(L, x, s);
    }
    if (s->kind == KL_T_INT && t->kind == KL_T_FLOAT) {
        return pyfloat_to_int(L, kl_lw_conv(L, x, kl_f64), s);
    }
    if (t->kind == KL_T_INT) {
        x = kl_lw_conv(L, x, kl_f64);
    }
    return kl_lw_conv(L, x, s);
}

int
kl_lw_builtin(Lower *L, int32_t old)
{
    const KlInst *in = &L->oi[old];
    KlBuiltin b = (KlBuiltin)in->aux;
    const KlType *s = kl_type_strong(in->type);
    int32_t n = in->nargs;
    int32_t r;
    for (int32_t i = 0; i < n; i++) {
        const KlType *t = arg_type(L, in, i);
        int ok = kl_type_is_scalar(t)
                 || (b == KL_BI_len && (t->kind == KL_T_ARRAY
                                        || t->kind == KL_T_SHAPE));
        if (!ok) {
            return kl_compile_error(L->d, L->line, "%s() of %s is not "
                                    "supported", kl_builtin_pyname(b),
                                    t->name);
        }
    }
    switch (b) {
    case KL_BI_abs:
        r = n == 1 ? lower_abs(L, in, s) : arity_error(L, b, n);
        break;
    case KL_BI_min:
    case KL_BI_max:
        r = lower_minmax(L, in, s, b == KL_BI_max);
        break;
    case KL_BI_len: {
        if (n != 1) {
            r = arity_error(L, b, n);
            break;
        }
        const KlType *t = arg_type(L, in, 0);
        if (t->kind == KL_T_SHAPE) {
            r = kl_lw_ci(L, kl_i64, t->ndim);
        }
        else if (t->kind != KL_T_ARRAY || t->ndim == 0) {
            r = kl_compile_error(L->d, L->line, "len() of %s", t->name);
        }
        else {
            r = kl_lw_e1(L, KL_OP_dim, kl_i64, arg_val(L, in, 0));
            if (r >= 0) {
                L->f->insts[r].imm.i = 0;
            }
        }
        break;
    }
    case KL_BI_int:
        r = n == 0 ? kl_lw_ci(L, kl_i64, 0)
            : n == 1 ? to_int(L, in, 0, KL_MATH_trunc, 0)
            : arity_error(L, b, n);
        break;
    case KL_BI_round:
        r = n == 1 ? to_int(L, in, 1, KL_MATH_rint, 0)
            : kl_compile_error(L->d, L->line, "round() with ndigits is not "
                               "supported yet");
        break;
    case KL_BI_float:
    case KL_BI_bool:
        if (n == 0) {
            r = b == KL_BI_bool ? kl_lw_ci(L, kl_bool, 0)
                                : kl_lw_cf(L, kl_f64, 0.0);
        }
        else if (n != 1) {
            r = arity_error(L, b, n);
        }
        else if (b == KL_BI_bool) {
            r = kl_lw_truth(L, arg_val(L, in, 0));
        }
        else {
            r = kl_lw_conv(L, real_arg(L, in, 0), s);
        }
        break;
    case KL_BI_complex:
        r = lower_complex(L, in, s);
        break;
    case KL_BI_np_bool: case KL_BI_np_int8: case KL_BI_np_int16:
    case KL_BI_np_int32: case KL_BI_np_int64: case KL_BI_np_uint8:
    case KL_BI_np_uint16: case KL_BI_np_uint32: case KL_BI_np_uint64:
    case KL_BI_np_float32: case KL_BI_np_float64: case KL_BI_np_complex64:
    case KL_BI_np_complex128:
        r = n <= 2 ? lower_npscalar(L, in, s) : arity_error(L, b, n);
        break;
    case KL_BI_f64_bits:
    case KL_BI_f64_from_bits:
        /* kiln's own math (python/kiln/_devmath.py): infer checked that
         * the operand is a float64 / int64 */
        r = n == 1 ? kl_lw_e1(L, KL_OP_bitcast, s, arg_val(L, in, 0))
                   : arity_error(L, b, n);
        break;
    case KL_BI_conjugate: {
        if (n != 1) {
            r = arity_error(L, b, n);
            break;
        }
        int32_t x = arg_val(L, in, 0);
        if (arg_type(L, in, 0)->kind == KL_T_COMPLEX) {
            x = kl_lw_conv(L, x, s);
            r = kl_lw_cmake(L, s, kl_lw_re(L, x),
                            kl_lw_e1(L, KL_OP_neg, kl_type_float(s->bits / 2),
                                     kl_lw_im(L, x)));
        }
        else {
            r = kl_lw_conv(L, x, s);
        }
        break;
    }
    default:
        r = lower_math(L, in, b);
        if (r == -2) {
            r = kl_internal_error(L->d, "lower: unknown builtin %d", (int)b);
        }
        break;
    }
    if (r < 0) {
        return -1;
    }
    L->vmap[old] = kl_lw_conv(L, r, s);
    return L->vmap[old] < 0 ? -1 : 0;
}
