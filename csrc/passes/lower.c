/* passes/lower.c: replaces the Python-level ops of a typed function by
 * primitive ops, making Python / NumPy semantics explicit: promotion casts,
 * floor division and modulo, checked float -> int conversions, shifts,
 * truth tests, comparisons, array indexing with negative-index wrapping and
 * bounds checks, shape queries, calls and range tests.  Builtins, math
 * functions, powers and complex arithmetic live in lower_builtins.c.
 *
 * The function is rebuilt into fresh tables: old block b becomes new block
 * b (so loops keep their block ids), and checks split blocks by appending
 * new ones (`branch ok -> continuation, else -> block ending in raise`).
 * Values map old -> new through Lower.vmap; a shape tuple maps to its ndim
 * int64 items (Lower.shp) and None to nothing, so block params of those
 * types expand to ndim params or vanish.  Primitive operand types are the
 * strong forms of the Python-level ones; weakness only picks semantics.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lower.h"

/* Records an out-of-memory or missing-operand failure; returns -1. */
static int32_t
fail(Lower *L)
{
    if (L->d->kind == KL_DIAG_NONE) {
        kl_error(L->d, KL_DIAG_NOMEM, L->line, "out of memory");
    }
    return -1;
}

/* ---- emission helpers ------------------------------------------------- */

const KlType *
kl_lw_type(Lower *L, int32_t v)
{
    return L->f->insts[v].type;
}

int32_t
kl_lw_emit(Lower *L, KlOp op, const KlType *t, int32_t n, const int32_t *args)
{
    for (int32_t i = 0; i < n; i++) {
        if (args[i] < 0) {
            return fail(L);
        }
    }
    int32_t id = kl_emit(L->f, L->cur, op, t, L->line, n, args);
    return id < 0 ? fail(L) : id;
}

int32_t
kl_lw_e1(Lower *L, KlOp op, const KlType *t, int32_t a)
{
    return kl_lw_emit(L, op, t, 1, &a);
}

int32_t
kl_lw_e2(Lower *L, KlOp op, const KlType *t, int32_t a, int32_t b)
{
    int32_t args[2] = {a, b};
    return kl_lw_emit(L, op, t, 2, args);
}

int32_t
kl_lw_ci(Lower *L, const KlType *t, int64_t v)
{
    int32_t id = kl_const_int(L->f, L->cur, t, v, L->line);
    return id < 0 ? fail(L) : id;
}

int32_t
kl_lw_cf(Lower *L, const KlType *t, double v)
{
    int32_t id = kl_const_float(L->f, L->cur, t, v, L->line);
    return id < 0 ? fail(L) : id;
}

int32_t
kl_lw_bin(Lower *L, KlOp op, int32_t a, int32_t b)
{
    if (a < 0 || b < 0) {
        return -1;
    }
    return kl_lw_e2(L, op, kl_lw_type(L, a), a, b);
}

int32_t
kl_lw_cmp(Lower *L, KlCmp c, int32_t a, int32_t b)
{
    if (a < 0 || b < 0) {
        return -1;
    }
    if (kl_lw_type(L, a) == kl_bool && c != KL_CMP_EQ && c != KL_CMP_NE) {
        a = kl_lw_e1(L, KL_OP_cast, kl_i64, a);
        b = kl_lw_e1(L, KL_OP_cast, kl_i64, b);
    }
    int32_t id = kl_lw_e2(L, KL_OP_cmp, kl_bool, a, b);
    if (id >= 0) {
        L->f->insts[id].aux = c;
    }
    return id;
}

int32_t
kl_lw_sel(Lower *L, int32_t c, int32_t a, int32_t b)
{
    if (c < 0 || a < 0 || b < 0) {
        return -1;
    }
    int32_t args[3] = {c, a, b};
    return kl_lw_emit(L, KL_OP_select, kl_lw_type(L, a), 3, args);
}

int32_t
kl_lw_and(Lower *L, int32_t a, int32_t b)
{
    return kl_lw_e2(L, KL_OP_and, kl_bool, a, b);
}

int32_t
kl_lw_or(Lower *L, int32_t a, int32_t b)
{
    return kl_lw_e2(L, KL_OP_or, kl_bool, a, b);
}

int32_t
kl_lw_not(Lower *L, int32_t a)
{
    return kl_lw_e2(L, KL_OP_xor, kl_bool, a, kl_lw_ci(L, kl_bool, 1));
}

int32_t
kl_lw_math1(Lower *L, KlMathFn fn, int32_t a)
{
    if (a < 0) {
        return -1;
    }
    int32_t id = kl_lw_e1(L, KL_OP_math, kl_lw_type(L, a), a);
    if (id >= 0) {
        L->f->insts[id].aux = fn;
    }
    return id;
}

int32_t
kl_lw_math2(Lower *L, KlMathFn fn, int32_t a, int32_t b)
{
    if (a < 0 || b < 0) {
        return -1;
    }
    int32_t id = kl_lw_e2(L, KL_OP_math, kl_lw_type(L, a), a, b);
    if (id >= 0) {
        L->f->insts[id].aux = fn;
    }
    return id;
}

/* Float type of the parts of complex type ct. */
static const KlType *
part_type(const KlType *ct)
{
    return kl_type_float(ct->bits / 2);
}

int32_t
kl_lw_re(Lower *L, int32_t z)
{
    if (z < 0) {
        return -1;
    }
    return kl_lw_e1(L, KL_OP_creal, part_type(kl_lw_type(L, z)), z);
}

int32_t
kl_lw_im(Lower *L, int32_t z)
{
    if (z < 0) {
        return -1;
    }
    return kl_lw_e1(L, KL_OP_cimag, part_type(kl_lw_type(L, z)), z);
}

int32_t
kl_lw_cmake(Lower *L, const KlType *ct, int32_t re, int32_t im)
{
    return kl_lw_e2(L, KL_OP_cmake, kl_type_strong(ct), re, im);
}

int32_t
kl_lw_isnan(Lower *L, int32_t x)
{
    return kl_lw_cmp(L, KL_CMP_NE, x, x);
}

int32_t
kl_lw_isinf(Lower *L, int32_t x)
{
    if (x < 0) {
        return -1;
    }
    return kl_lw_cmp(L, KL_CMP_EQ, kl_lw_math1(L, KL_MATH_fabs, x),
                     kl_lw_cf(L, kl_lw_type(L, x), INFINITY));
}

int32_t
kl_lw_isfinite(Lower *L, int32_t x)
{
    if (x < 0) {
        return -1;
    }
    return kl_lw_cmp(L, KL_CMP_LT, kl_lw_math1(L, KL_MATH_fabs, x),
                     kl_lw_cf(L, kl_lw_type(L, x), INFINITY));
}

int
kl_lw_const_int(Lower *L, int32_t v, int64_t *out)
{
    if (v < 0) {
        return 0;
    }
    const KlInst *in = &L->f->insts[v];
    if (in->op != KL_OP_const
        || (in->type->kind != KL_T_INT && in->type->kind != KL_T_BOOL)) {
        return 0;
    }
    *out = in->imm.i;
    return 1;
}

/* ---- control-flow helpers --------------------------------------------- */

int32_t
kl_lw_block(Lower *L)
{
    int32_t b = kl_block_new(L->f);
    if (b < 0) {
        return fail(L);
    }
    L->f->blocks[b].loop = L->loop;
    return b;
}

int
kl_lw_raise(Lower *L, KlExcKind kind, const char *msg, int n,
            const int32_t *payload)
{
    int32_t site = kl_raise_site(L->f->mod, kind, L->line, NULL, msg);
    if (site < 0) {
        return fail(L);
    }
    int32_t id = kl_lw_emit(L, KL_OP_raise, kl_void, n, payload);
    if (id < 0) {
        return -1;
    }
    L->f->insts[id].imm.i = site;
    return 0;
}

int
kl_lw_guard(Lower *L, int32_t ok, int32_t *bad)
{
    if (ok < 0) {
        return -1;
    }
    int32_t okb = kl_lw_block(L);
    int32_t badb = kl_lw_block(L);
    if (okb < 0 || badb < 0
        || kl_branch(L->f, L->cur, ok, okb, badb, L->line) < 0) {
        return fail(L);
    }
    L->cur = okb;
    *bad = badb;
    return 0;
}

int
kl_lw_check(Lower *L, int32_t ok, KlExcKind kind, const char *msg, int n,
            const int32_t *payload)
{
    int32_t bad;
    if (kl_lw_guard(L, ok, &bad) < 0) {
        return -1;
    }
    int32_t cont = L->cur;
    L->cur = bad;
    int rc = kl_lw_raise(L, kind, msg, n, payload);
    L->cur = cont;
    return rc;
}

int
kl_lw_float_check(Lower *L, int32_t ok, KlExcKind kind, const char *msg)
{
    int32_t bad;
    if (kl_lw_guard(L, ok, &bad) < 0) {
        return -1;
    }
    int32_t cont = L->cur;
    L->cur = bad;
    int rc = kl_lw_raise(L, kind, msg, 0, NULL);
    if (rc == 0) {
        L->f->insts[kl_block_term(L->f, bad)].aux = 1;
    }
    L->cur = cont;
    return rc;
}

/* ---- conversions ------------------------------------------------------- */

int32_t
kl_lw_truth(Lower *L, int32_t v)
{
    if (v < 0) {
        return -1;
    }
    const KlType *t = kl_lw_type(L, v);
    switch (t->kind) {
    case KL_T_BOOL:
        return v;
    case KL_T_INT:
        return kl_lw_cmp(L, KL_CMP_NE, v, kl_lw_ci(L, t, 0));
    case KL_T_FLOAT:
        return kl_lw_cmp(L, KL_CMP_NE, v, kl_lw_cf(L, t, 0.0));
    case KL_T_COMPLEX: {
        const KlType *p = part_type(t);
        int32_t zero = kl_lw_cf(L, p, 0.0);
        return kl_lw_or(L, kl_lw_cmp(L, KL_CMP_NE, kl_lw_re(L, v), zero),
                        kl_lw_cmp(L, KL_CMP_NE, kl_lw_im(L, v), zero));
    }
    default:
        return kl_compile_error(L->d, L->line,
                                "cannot take the truth value of %s", t->name);
    }
}

/* Wraps integer bit pattern v to the width and signedness of t. */
static int64_t
wrap_int(int64_t v, const KlType *t)
{
    if (t->kind == KL_T_BOOL) {
        return v != 0;
    }
    if (t->bits >= 64) {
        return v;
    }
    uint64_t mask = ((uint64_t)1 << t->bits) - 1;
    uint64_t u = (uint64_t)v & mask;
    if (t->is_signed && (u >> (t->bits - 1)) != 0) {
        u |= ~mask;
    }
    return (int64_t)u;
}

/* Folds a conversion of constant v to `to` when exact and cheap; -2 when
 * v is not a foldable constant. */
static int32_t
fold_conv(Lower *L, int32_t v, const KlType *to)
{
    const KlInst *in = &L->f->insts[v];
    if (in->op != KL_OP_const) {
        return -2;
    }
    const KlType *from = in->type;
    if (from->kind == KL_T_INT || from->kind == KL_T_BOOL) {
        int64_t x = in->imm.i;
        if (to->kind == KL_T_INT || to->kind == KL_T_BOOL) {
            return kl_lw_ci(L, to, wrap_int(x, to));
        }
        if (to->kind == KL_T_FLOAT) {
            double f = (from->kind == KL_T_INT && !from->is_signed)
                       ? (double)(uint64_t)x : (double)x;
            return kl_lw_cf(L, to, to->bits == 32 ? (double)(float)f : f);
        }
    }
    else if (from->kind == KL_T_FLOAT && to->kind == KL_T_FLOAT) {
        double f = in->imm.f;
        return kl_lw_cf(L, to, to->bits == 32 ? (double)(float)f : f);
    }
    return -2;
}

int32_t
kl_lw_conv(Lower *L, int32_t v, const KlType *to)
{
    if (v < 0) {
        return -1;
    }
    to = kl_type_strong(to);
    const KlType *from = kl_lw_type(L, v);
    if (from == to) {
        return v;
    }
    if (!kl_type_is_scalar(from) || !kl_type_is_scalar(to)) {
        return kl_compile_error(L->d, L->line, "cannot convert %s to %s",
                                from->name, to->name);
    }
    int32_t folded = fold_conv(L, v, to);
    if (folded != -2) {
        return folded;
    }
    if (to->kind == KL_T_BOOL) {
        return kl_lw_truth(L, v);
    }
    if (to->kind == KL_T_COMPLEX) {
        const KlType *p = part_type(to);
        int32_t re, im;
        if (from->kind == KL_T_COMPLEX) {
            re = kl_lw_conv(L, kl_lw_re(L, v), p);
            im = kl_lw_conv(L, kl_lw_im(L, v), p);
        }
        else {
            re = kl_lw_conv(L, v, p);
            im = kl_lw_cf(L, p, 0.0);
        }
        return kl_lw_cmake(L, to, re, im);
    }
    if (from->kind == KL_T_COMPLEX) {
        /* NumPy's complex -> real cast keeps the real part */
        return kl_lw_conv(L, kl_lw_re(L, v), to);
    }
    if (from->kind == KL_T_FLOAT && to->kind == KL_T_INT) {
        return kl_lw_f2i(L, v, to);
    }
    return kl_lw_e1(L, KL_OP_cast, to, v);
}

/* Emits the cold path of a failed float -> int range test on x: raises the
 * error CPython's int() gives for NaN, infinities, or a finite value out of
 * range.  Ends the current block. */
static int
f2i_errors(Lower *L, int32_t x)
{
    int32_t nanb, rest;
    if (kl_lw_guard(L, kl_lw_not(L, kl_lw_isnan(L, x)), &nanb) < 0) {
        return -1;
    }
    rest = L->cur;
    L->cur = nanb;
    if (kl_lw_raise(L, KL_EXC_VALUE, "cannot convert float NaN to integer",
                    0, NULL) < 0) {
        return -1;
    }
    L->cur = rest;
    if (kl_lw_check(L, kl_lw_not(L, kl_lw_isinf(L, x)), KL_EXC_OVERFLOW,
                    "cannot convert float infinity to integer", 0, NULL) < 0) {
        return -1;
    }
    return kl_lw_raise(L, KL_EXC_OVERFLOW,
                       "kiln: int() result out of int64 range", 0, NULL);
}

int32_t
kl_lw_f2i(Lower *L, int32_t x, const KlType *to)
{
    if (x < 0) {
        return -1;
    }
    to = kl_type_strong(to);
    const KlType *ft = kl_lw_type(L, x);
    int u64 = to->kind == KL_T_INT && to->bits == 64 && !to->is_signed;
    double two63 = 9223372036854775808.0;
    int32_t lo = kl_lw_cf(L, ft, -two63);
    int32_t hi = kl_lw_cf(L, ft, u64 ? 2.0 * two63 : two63);
    int32_t ok = kl_lw_and(L, kl_lw_cmp(L, KL_CMP_GE, x, lo),
                           kl_lw_cmp(L, KL_CMP_LT, x, hi));
    int32_t bad;
    if (kl_lw_guard(L, ok, &bad) < 0) {
        return -1;
    }
    int32_t cont = L->cur;
    L->cur = bad;
    if (f2i_errors(L, x) < 0) {
        return -1;
    }
    L->cur = cont;
    if (u64) {
        /* values in [2**63, 2**64): convert x - 2**63 and set the top bit */
        int32_t h = kl_lw_cf(L, ft, two63);
        int32_t big = kl_lw_cmp(L, KL_CMP_GE, x, h);
        int32_t y = kl_lw_sel(L, big, kl_lw_bin(L, KL_OP_sub, x, h), x);
        int32_t i = kl_lw_e1(L, KL_OP_cast, kl_i64, y);
        int32_t top = kl_lw_ci(L, kl_i64, INT64_MIN);
        i = kl_lw_sel(L, big, kl_lw_bin(L, KL_OP_xor, i, top), i);
        return kl_lw_e1(L, KL_OP_cast, to, i);
    }
    int32_t i = kl_lw_e1(L, KL_OP_cast, kl_i64, x);
    return to == kl_i64 ? i : kl_lw_e1(L, KL_OP_cast, to, i);
}

/* ---- value map ---------------------------------------------------------- */

/* Old instruction `old`. */
static const KlInst *
OLD(Lower *L, int32_t old)
{
    return &L->oi[old];
}

/* The new value of old value `old` (an internal error when unset). */
static int32_t
val(Lower *L, int32_t old)
{
    int32_t v = L->vmap[old];
    if (v < 0) {
        kl_internal_error(L->d, "%s: lower: %%%d used without a value",
                          L->f->name, old);
    }
    return v;
}

/* Records the new value of old instruction `old`; -1 if v failed. */
static int
set(Lower *L, int32_t old, int32_t v)
{
    L->vmap[old] = v;
    return v < 0 ? -1 : 0;
}

/* Values that vanish after lowering (None). */
static int
is_nothing(const KlType *t)
{
    return t == NULL || t->kind == KL_T_NONE || t->kind == KL_T_VOID;
}

/* ---- operators ------------------------------------------------------- */

/* Python floor division / modulo of ints a, b of one type; zero divisor
 * raises for weak and strong ints alike; INT_MIN // -1 wraps. */
static int32_t
int_divmod(Lower *L, int32_t a, int32_t b, int want_mod)
{
    const KlType *t = kl_lw_type(L, b);
    int64_t k = 0;
    int known = kl_lw_const_int(L, b, &k);
    if (!known || k == 0) {
        int32_t ok = kl_lw_cmp(L, KL_CMP_NE, b, kl_lw_ci(L, t, 0));
        const char *msg = want_mod ? "integer modulo by zero"
                                   : "integer division or modulo by zero";
        if (kl_lw_check(L, ok, KL_EXC_ZERODIV, msg, 0, NULL) < 0) {
            return -1;
        }
    }
    if (!t->is_signed) {
        return kl_lw_bin(L, want_mod ? KL_OP_rem : KL_OP_div, a, b);
    }
    int32_t zero = kl_lw_ci(L, t, 0);
    int32_t m1 = -1, bs = b;
    if (!known || k == -1) {
        m1 = kl_lw_cmp(L, KL_CMP_EQ, b, kl_lw_ci(L, t, -1));
        bs = kl_lw_sel(L, m1, kl_lw_ci(L, t, 1), b);
    }
    int32_t r = kl_lw_bin(L, KL_OP_rem, a, bs);
    int32_t q = want_mod ? -1 : kl_lw_bin(L, KL_OP_div, a, bs);
    if (m1 >= 0) {
        /* x // -1 == -x (wrapping), x % -1 == 0 */
        r = kl_lw_sel(L, m1, zero, r);
        if (!want_mod) {
            q = kl_lw_sel(L, m1, kl_lw_e1(L, KL_OP_neg, t, a), q);
        }
    }
    /* a nonzero remainder whose sign differs from the divisor's steps the
     * quotient down and moves the remainder into the divisor's sign */
    int32_t adj = kl_lw_and(L, kl_lw_cmp(L, KL_CMP_NE, r, zero),
                            kl_lw_cmp(L, KL_CMP_LT,
                                      kl_lw_bin(L, KL_OP_xor, r, b), zero));
    if (want_mod) {
        return kl_lw_sel(L, adj, kl_lw_bin(L, KL_OP_add, r, b), r);
    }
    return kl_lw_sel(L, adj, kl_lw_bin(L, KL_OP_sub, q, kl_lw_ci(L, t, 1)),
                     q);
}

/* Python float floor division / modulo (CPython's float_floor_div and
 * float_rem; NumPy's npy_floor_divide / npy_remainder agree except for a
 * zero divisor, where weak operands raise and strong ones give IEEE). */
static int32_t
float_divmod(Lower *L, int32_t a, int32_t b, int want_mod, int weak)
{
    const KlType *t = kl_lw_type(L, a);
    int32_t zero = kl_lw_cf(L, t, 0.0);
    if (weak) {
        const char *msg = want_mod ? "float modulo"
                                   : "float floor division by zero";
        if (kl_lw_float_check(L, kl_lw_cmp(L, KL_CMP_NE, b, zero),
                              KL_EXC_ZERODIV, msg) < 0) {
            return -1;
        }
    }
    int32_t mod = kl_lw_math2(L, KL_MATH_fmod, a, b);
    int32_t nz = kl_lw_cmp(L, KL_CMP_NE, mod, zero);
    int32_t signs = kl_lw_e2(L, KL_OP_xor, kl_bool,
                             kl_lw_cmp(L, KL_CMP_LT, b, zero),
                             kl_lw_cmp(L, KL_CMP_LT, mod, zero));
    int32_t adj = kl_lw_and(L, nz, signs);
    if (want_mod) {
        int32_t m1 = kl_lw_sel(L, adj, kl_lw_bin(L, KL_OP_add, mod, b), mod);
        return kl_lw_sel(L, nz, m1, kl_lw_math2(L, KL_MATH_copysign, zero, b));
    }
    int32_t one = kl_lw_cf(L, t, 1.0);
    int32_t div = kl_lw_bin(L, KL_OP_div, kl_lw_bin(L, KL_OP_sub, a, mod), b);
    div = kl_lw_sel(L, adj, kl_lw_bin(L, KL_OP_sub, div, one), div);
    int32_t fl = kl_lw_math1(L, KL_MATH_floor, div);
    int32_t up = kl_lw_cmp(L, KL_CMP_GT, kl_lw_bin(L, KL_OP_sub, div, fl),
                           kl_lw_cf(L, t, 0.5));
    fl = kl_lw_sel(L, up, kl_lw_bin(L, KL_OP_add, fl, one), fl);
    int32_t q = kl_lw_bin(L, KL_OP_div, a, b);
    int32_t res = kl_lw_sel(L, kl_lw_cmp(L, KL_CMP_NE, div, zero), fl,
                            kl_lw_math2(L, KL_MATH_copysign, zero, q));
    if (!weak) {
        res = kl_lw_sel(L, kl_lw_cmp(L, KL_CMP_EQ, b, zero), q, res);
    }
    return res;
}

/* a << b or a >> b on ints of one type: negative counts raise; counts of
 * at least the width give 0 (<<, unsigned >>) or the sign (signed >>). */
static int32_t
shift(Lower *L, int32_t a, int32_t b, int left)
{
    const KlType *t = kl_lw_type(L, a);
    int32_t zero = kl_lw_ci(L, t, 0);
    if (t->is_signed) {
        if (kl_lw_check(L, kl_lw_cmp(L, KL_CMP_GE, b, zero), KL_EXC_VALUE,
                        "negative shift count", 0, NULL) < 0) {
            return -1;
        }
    }
    int32_t last = kl_lw_ci(L, t, t->bits - 1);
    int32_t big = kl_lw_cmp(L, KL_CMP_GT, b, last);
    int32_t cnt = kl_lw_sel(L, big, last, b);
    int32_t r = kl_lw_bin(L, left ? KL_OP_shl : KL_OP_shr, a, cnt);
    if (left || !t->is_signed) {
        r = kl_lw_sel(L, big, zero, r);
    }
    return r;
}

/* Both operands of a Python-level binary op are int or bool. */
static int
int_operands(Lower *L, const KlInst *in)
{
    for (int i = 0; i < 2; i++) {
        KlTypeKind k = OLD(L, in->args[i])->type->kind;
        if (k != KL_T_INT && k != KL_T_BOOL) {
            return 0;
        }
    }
    return 1;
}

static const char *const binop_names[] = {
    "+", "-", "*", "/", "//", "%", "**", "<<", ">>", "&", "|", "^",
};

static int32_t
binop_error(Lower *L, const KlInst *in)
{
    const char *op = (in->aux >= 0 && in->aux <= KL_BIN_XOR)
                     ? binop_names[in->aux] : "?";
    return kl_compile_error(L->d, L->line,
                            "unsupported operand types for %s: %s and %s", op,
                            OLD(L, in->args[0])->type->name,
                            OLD(L, in->args[1])->type->name);
}

/* A complex + - * / on values of complex type t. */
static int32_t
complex_binop(Lower *L, const KlInst *in, int32_t a, int32_t b, int weak)
{
    const KlType *t = kl_lw_type(L, a);
    switch (in->aux) {
    case KL_BIN_ADD:
    case KL_BIN_SUB: {
        KlOp op = in->aux == KL_BIN_ADD ? KL_OP_add : KL_OP_sub;
        return kl_lw_cmake(L, t,
                           kl_lw_bin(L, op, kl_lw_re(L, a), kl_lw_re(L, b)),
                           kl_lw_bin(L, op, kl_lw_im(L, a), kl_lw_im(L, b)));
    }
    case KL_BIN_MUL:
        return kl_lw_cmul(L, a, b);
    case KL_BIN_TRUEDIV:
        return kl_lw_cdiv(L, a, b, weak, "complex division by zero");
    case KL_BIN_POW:
        return kl_lw_cpow(L, a, b, weak, OLD(L, in->args[1]));
    default:
        return binop_error(L, in);
    }
}

/* A float reduction step of a prange loop (py_binop imm.i 2, from
 * parallel.c) passes its mark to the primitive op computing it. */
static int32_t
mark_reduction_step(Lower *L, const KlInst *in, int32_t r)
{
    if (r >= 0 && in->imm.i == 2) {
        KlInst *p = &L->f->insts[r];
        if ((p->op == KL_OP_add || p->op == KL_OP_sub || p->op == KL_OP_mul)
            && p->type->kind == KL_T_FLOAT) {
            p->imm.i = 1;
        }
    }
    return r;
}

/* Operand k (value v) of binop `in` converted to the operation's type s.
 * A Python int meeting a NumPy int must fit it, as in NumPy 2
 * (np.int8(3) * 1000 raises OverflowError); a range counter's advance
 * and a reduction step are kiln's own, and convert as they are. */
static int32_t
binop_operand(Lower *L, const KlInst *in, int k, int32_t v, const KlType *s)
{
    const KlType *t = OLD(L, in->args[k])->type;
    if (s->kind == KL_T_INT && !in->type->weak && t->kind == KL_T_INT
        && t->weak && in->imm.i == 0) {
        return kl_lw_pyint_to_int(L, v, s);
    }
    return kl_lw_conv(L, v, s);
}

static int32_t
lower_binop(Lower *L, const KlInst *in)
{
    const KlType *r = in->type;
    const KlType *s = kl_type_strong(r);
    int32_t a = val(L, in->args[0]);
    int32_t b = val(L, in->args[1]);
    if (a < 0 || b < 0) {
        return -1;
    }
    if (!kl_type_is_scalar(OLD(L, in->args[0])->type)
        || !kl_type_is_scalar(OLD(L, in->args[1])->type)
        || !kl_type_is_scalar(r)) {
        return kl_compile_error(L->d, L->line, "array expressions are not "
                                "supported; index the array");
    }
    a = binop_operand(L, in, 0, a, s);
    b = binop_operand(L, in, 1, b, s);
    if (a < 0 || b < 0) {
        return -1;
    }
    if (s->kind == KL_T_COMPLEX) {
        return complex_binop(L, in, a, b, r->weak);
    }
    int isint = s->kind == KL_T_INT;
    switch (in->aux) {
    case KL_BIN_ADD:    /* NumPy bools: + is or, * is and */
        return kl_lw_bin(L, s == kl_bool ? KL_OP_or : KL_OP_add, a, b);
    case KL_BIN_SUB:
        return s == kl_bool ? binop_error(L, in) : kl_lw_bin(L, KL_OP_sub, a, b);
    case KL_BIN_MUL:
        return kl_lw_bin(L, s == kl_bool ? KL_OP_and : KL_OP_mul, a, b);
    case KL_BIN_TRUEDIV:
        if (s->kind != KL_T_FLOAT) {
            return binop_error(L, in);
        }
        if (r->weak) {
            const char *msg = int_operands(L, in) ? "division by zero"
                                                  : "float division by zero";
            int32_t ok = kl_lw_cmp(L, KL_CMP_NE, b, kl_lw_cf(L, s, 0.0));
            if (kl_lw_float_check(L, ok, KL_EXC_ZERODIV, msg) < 0) {
                return -1;
            }
        }
        return kl_lw_bin(L, KL_OP_div, a, b);
    case KL_BIN_FLOORDIV:
    case KL_BIN_MOD:
        if (isint) {
            return int_divmod(L, a, b, in->aux == KL_BIN_MOD);
        }
        if (s->kind == KL_T_FLOAT) {
            return float_divmod(L, a, b, in->aux == KL_BIN_MOD, r->weak);
        }
        return binop_error(L, in);
    case KL_BIN_POW:
        if (isint) {
            return kl_lw_ipow(L, a, b);
        }
        if (s->kind == KL_T_FLOAT) {
            return kl_lw_fpow(L, a, b, r->weak);
        }
        return binop_error(L, in);
    case KL_BIN_LSHIFT:
    case KL_BIN_RSHIFT:
        if (!isint) {
            return binop_error(L, in);
        }
        return shift(L, a, b, in->aux == KL_BIN_LSHIFT);
    case KL_BIN_AND:
    case KL_BIN_OR:
    case KL_BIN_XOR:
        if (!isint && s != kl_bool) {
            return binop_error(L, in);
        }
        return kl_lw_bin(L, in->aux == KL_BIN_AND ? KL_OP_and
                            : in->aux == KL_BIN_OR ? KL_OP_or : KL_OP_xor,
                         a, b);
    default:
        return binop_error(L, in);
    }
}

static int32_t
lower_unop(Lower *L, const KlInst *in)
{
    int32_t a = val(L, in->args[0]);
    const KlType *s = kl_type_strong(in->type);
    if (a < 0) {
        return -1;
    }
    if (in->aux == KL_UN_NOT) {
        return kl_lw_not(L, kl_lw_truth(L, a));
    }
    if (!kl_type_is_scalar(s)) {
        return kl_compile_error(L->d, L->line, "array expressions are not "
                                "supported; index the array");
    }
    a = kl_lw_conv(L, a, s);
    switch (in->aux) {
    case KL_UN_POS:
        return a;
    case KL_UN_NEG:
        if (s->kind == KL_T_COMPLEX) {
            const KlType *p = part_type(s);
            return kl_lw_cmake(L, s, kl_lw_e1(L, KL_OP_neg, p, kl_lw_re(L, a)),
                               kl_lw_e1(L, KL_OP_neg, p, kl_lw_im(L, a)));
        }
        if (s->kind == KL_T_INT || s->kind == KL_T_FLOAT) {
            return kl_lw_e1(L, KL_OP_neg, s, a);
        }
        break;
    case KL_UN_INVERT:
        if (s->kind == KL_T_BOOL) {
            return kl_lw_not(L, a);     /* ~np.True_ is np.False_ */
        }
        if (s->kind == KL_T_INT) {
            return kl_lw_bin(L, KL_OP_xor, a, kl_lw_ci(L, s, wrap_int(-1, s)));
        }
        break;
    default:
        break;
    }
    return kl_compile_error(L->d, L->line, "bad operand type for unary "
                            "operator: %s", OLD(L, in->args[0])->type->name);
}

/* Exact comparison of two integers of different types (NumPy 2 compares
 * Python ints and mixed int64/uint64 by value, never wrapping). */
static int32_t
int_cmp_exact(Lower *L, KlCmp c, int32_t a, const KlType *ta, int32_t b,
              const KlType *tb)
{
    int ua = ta->kind == KL_T_INT && ta->bits == 64 && !ta->is_signed;
    int ub = tb->kind == KL_T_INT && tb->bits == 64 && !tb->is_signed;
    if (!ua && !ub) {
        return kl_lw_cmp(L, c, kl_lw_conv(L, a, kl_i64),
                         kl_lw_conv(L, b, kl_i64));
    }
    /* one uint64 and one signed value s: a negative s is below it */
    int32_t s = kl_lw_conv(L, ua ? b : a, kl_i64);
    int32_t neg = kl_lw_cmp(L, KL_CMP_LT, s, kl_lw_ci(L, kl_i64, 0));
    int32_t cu = kl_lw_cmp(L, c, kl_lw_conv(L, a, kl_u64),
                           kl_lw_conv(L, b, kl_u64));
    int s_left = !ua;
    int below = c == KL_CMP_NE
                || (s_left ? (c == KL_CMP_LT || c == KL_CMP_LE)
                           : (c == KL_CMP_GT || c == KL_CMP_GE));
    return kl_lw_sel(L, neg, kl_lw_ci(L, kl_bool, below), cu);
}

static int32_t
lower_cmp(Lower *L, const KlInst *in)
{
    const KlType *ta = OLD(L, in->args[0])->type;
    const KlType *tb = OLD(L, in->args[1])->type;
    if (!kl_type_is_scalar(ta) || !kl_type_is_scalar(tb)) {
        return kl_compile_error(L->d, L->line, "cannot compare %s and %s",
                                ta->name, tb->name);
    }
    if ((ta->kind == KL_T_INT || tb->kind == KL_T_INT)
        && (ta->kind == KL_T_INT || ta->kind == KL_T_BOOL)
        && (tb->kind == KL_T_INT || tb->kind == KL_T_BOOL)
        && kl_type_strong(ta) != kl_type_strong(tb)) {
        return int_cmp_exact(L, (KlCmp)in->aux, val(L, in->args[0]),
                             kl_type_strong(ta), val(L, in->args[1]),
                             kl_type_strong(tb));
    }
    const KlType *s = kl_type_strong(kl_type_promote(ta, tb));
    int32_t a = kl_lw_conv(L, val(L, in->args[0]), s);
    int32_t b = kl_lw_conv(L, val(L, in->args[1]), s);
    KlCmp c = (KlCmp)in->aux;
    if (s->kind != KL_T_COMPLEX) {
        return kl_lw_cmp(L, c, a, b);
    }
    if (c != KL_CMP_EQ && c != KL_CMP_NE) {
        return kl_compile_error(L->d, L->line, "complex numbers support only "
                                "== and != comparisons");
    }
    int32_t re = kl_lw_cmp(L, c, kl_lw_re(L, a), kl_lw_re(L, b));
    int32_t im = kl_lw_cmp(L, c, kl_lw_im(L, a), kl_lw_im(L, b));
    return c == KL_CMP_EQ ? kl_lw_and(L, re, im) : kl_lw_or(L, re, im);
}

/* Loop test of range(start, stop, step): counter before stop. */
static int32_t
lower_range_test(Lower *L, const KlInst *in)
{
    const KlType *t = kl_type_promote(OLD(L, in->args[0])->type,
                                      OLD(L, in->args[1])->type);
    t = kl_type_strong(kl_type_promote(t, OLD(L, in->args[2])->type));
    int32_t i = kl_lw_conv(L, val(L, in->args[0]), t);
    int32_t stop = kl_lw_conv(L, val(L, in->args[1]), t);
    int32_t step = kl_lw_conv(L, val(L, in->args[2]), t);
    int64_t k;
    if (kl_lw_const_int(L, step, &k)) {
        return kl_lw_cmp(L, k > 0 ? KL_CMP_LT : KL_CMP_GT, i, stop);
    }
    int32_t up = kl_lw_cmp(L, KL_CMP_GT, step, kl_lw_ci(L, t, 0));
    return kl_lw_sel(L, up, kl_lw_cmp(L, KL_CMP_LT, i, stop),
                     kl_lw_cmp(L, KL_CMP_GT, i, stop));
}

/* The range iterator's advance counter + step (py_binop add marked with
 * imm.i = 1): saturates at the type's limits instead of wrapping, so a
 * range ending near them still stops (the test then fails). */
static int32_t
lower_range_advance(Lower *L, const KlInst *in)
{
    const KlType *t = kl_type_strong(in->type);
    int32_t i = kl_lw_conv(L, val(L, in->args[0]), t);
    int32_t step = kl_lw_conv(L, val(L, in->args[1]), t);
    int32_t next = kl_lw_bin(L, KL_OP_add, i, step);
    if (t->kind != KL_T_INT) {
        return next;
    }
    int64_t k;
    int known = kl_lw_const_int(L, step, &k);
    if (known && k == 1) {
        return next;    /* i < stop <= max: i + 1 cannot wrap */
    }
    int bits = t->bits;
    int64_t max = t->is_signed ? (int64_t)(UINT64_MAX >> (65 - bits))
                               : (int64_t)(UINT64_MAX >> (64 - bits));
    int64_t min = t->is_signed ? -max - 1 : 0;
    int32_t cmax = kl_lw_ci(L, t, max), cmin = kl_lw_ci(L, t, min);
    /* up: i > max - step wraps; down: i < min - step wraps */
    int32_t over = kl_lw_cmp(L, KL_CMP_GT, i,
                             kl_lw_bin(L, KL_OP_sub, cmax, step));
    int32_t under = kl_lw_cmp(L, KL_CMP_LT, i,
                              kl_lw_bin(L, KL_OP_sub, cmin, step));
    int32_t up_next = kl_lw_sel(L, over, cmax, next);
    int32_t down_next = kl_lw_sel(L, under, cmin, next);
    if (known) {
        return k > 0 ? up_next : down_next;
    }
    int32_t up = kl_lw_cmp(L, KL_CMP_GT, step, kl_lw_ci(L, t, 0));
    return kl_lw_sel(L, up, up_next, down_next);
}

/* ---- arrays and shapes ------------------------------------------------ */

/* Address of element a[idx...] (old operand ids); wraps negative indices
 * and, with boundscheck, raises NumPy's IndexError.  Axes whose bit is set
 * in `proven` (passes/bounds.c proved 0 <= index < extent) get neither. */
static int32_t
element_address(Lower *L, int32_t aold, int32_t n, const int32_t *idx,
                int64_t proven)
{
    const KlType *at = OLD(L, aold)->type;
    if (at->kind != KL_T_ARRAY) {
        return kl_compile_error(L->d, L->line, "%s is not subscriptable",
                                at->name);
    }
    if (n != at->ndim) {
        return kl_compile_error(L->d, L->line,
                                "slices and sub-arrays are not supported yet");
    }
    int32_t args[KL_MAX_NDIM + 1];
    args[0] = val(L, aold);
    for (int32_t j = 0; j < n; j++) {
        const KlType *it = OLD(L, idx[j])->type;
        if (it->kind != KL_T_INT && it->kind != KL_T_BOOL) {
            return kl_compile_error(L->d, L->line, "array indices must be "
                                    "integers, not %s", it->name);
        }
        int32_t i = kl_lw_conv(L, val(L, idx[j]), kl_i64);
        if (proven & ((int64_t)1 << j)) {
            if (i < 0) {
                return -1;
            }
            args[j + 1] = i;
            continue;
        }
        int32_t dim = kl_lw_e1(L, KL_OP_dim, kl_i64, args[0]);
        if (dim < 0) {
            return -1;
        }
        L->f->insts[dim].imm.i = j;
        int32_t w = i;
        int64_t k;
        int known = kl_lw_const_int(L, i, &k);
        if (it->kind == KL_T_INT && it->is_signed && !(known && k >= 0)) {
            int32_t neg = kl_lw_cmp(L, KL_CMP_LT, i, kl_lw_ci(L, kl_i64, 0));
            w = kl_lw_sel(L, neg, kl_lw_bin(L, KL_OP_add, i, dim), i);
        }
        if (L->f->mod->options.boundscheck) {
            int32_t ok = kl_lw_cmp(L, KL_CMP_LT,
                                   kl_lw_e1(L, KL_OP_cast, kl_u64, w),
                                   kl_lw_e1(L, KL_OP_cast, kl_u64, dim));
            int32_t payload[3] = {i, kl_lw_ci(L, kl_i64, j), dim};
            if (kl_lw_check(L, ok, KL_EXC_INDEX, "index %lld is out of "
                            "bounds for axis %lld with size %lld", 3,
                            payload) < 0) {
                return -1;
            }
        }
        args[j + 1] = w;
    }
    return kl_lw_emit(L, KL_OP_elemptr, kl_type_ptr(at->elem), n + 1, args);
}

/* Item k (old operand) of the shape tuple `sold`. */
static int32_t
shape_item(Lower *L, int32_t sold, int32_t kold)
{
    int nd = OLD(L, sold)->type->ndim;
    int32_t *items = L->shp[sold];
    if (items == NULL) {
        return kl_internal_error(L->d, "lower: shape %%%d has no items", sold);
    }
    const KlType *kt = OLD(L, kold)->type;
    if (kt->kind != KL_T_INT && kt->kind != KL_T_BOOL) {
        return kl_compile_error(L->d, L->line, "tuple indices must be "
                                "integers, not %s", kt->name);
    }
    int32_t k = kl_lw_conv(L, val(L, kold), kl_i64);
    int64_t c;
    if (kl_lw_const_int(L, k, &c) && c >= -nd && c < nd) {
        return items[c < 0 ? c + nd : c];
    }
    int32_t n = kl_lw_ci(L, kl_i64, nd);
    int32_t w = kl_lw_sel(L, kl_lw_cmp(L, KL_CMP_LT, k, kl_lw_ci(L, kl_i64, 0)),
                          kl_lw_bin(L, KL_OP_add, k, n), k);
    int32_t ok = kl_lw_cmp(L, KL_CMP_LT, kl_lw_e1(L, KL_OP_cast, kl_u64, w),
                           kl_lw_e1(L, KL_OP_cast, kl_u64, n));
    if (kl_lw_check(L, ok, KL_EXC_INDEX, "tuple index out of range", 0,
                    NULL) < 0) {
        return -1;
    }
    if (nd == 0) {
        return kl_lw_ci(L, kl_i64, 0);      /* never reached */
    }
    int32_t r = items[nd - 1];
    for (int j = nd - 2; j >= 0; j--) {
        r = kl_lw_sel(L, kl_lw_cmp(L, KL_CMP_EQ, w, kl_lw_ci(L, kl_i64, j)),
                      items[j], r);
    }
    return r;
}

static int
lower_getitem(Lower *L, int32_t old)
{
    const KlInst *in = OLD(L, old);
    if (in->nargs < 2) {
        return kl_internal_error(L->d, "lower: getitem without index");
    }
    if (OLD(L, in->args[0])->type->kind == KL_T_SHAPE) {
        if (in->nargs != 2) {
            return kl_compile_error(L->d, L->line, "tuple indices must be "
                                    "integers");
        }
        return set(L, old, shape_item(L, in->args[0], in->args[1]));
    }
    int32_t p = element_address(L, in->args[0], in->nargs - 1, in->args + 1,
                                in->imm.i);
    if (p < 0) {
        return -1;
    }
    const KlType *et = OLD(L, in->args[0])->type->elem;
    return set(L, old, kl_lw_e1(L, KL_OP_load, et, p));
}

static int
lower_setitem(Lower *L, int32_t old)
{
    const KlInst *in = OLD(L, old);
    if (in->nargs < 3) {
        return kl_internal_error(L->d, "lower: setitem without index");
    }
    const KlType *at = OLD(L, in->args[0])->type;
    if (at->kind == KL_T_ARRAY && at->readonly) {
        return kl_error(L->d, KL_DIAG_VALUE, L->line,
                        "kernel writes to read-only array");
    }
    const KlType *vt = OLD(L, in->args[1])->type;
    if (at->kind == KL_T_ARRAY && vt->kind == KL_T_COMPLEX
        && at->elem->kind != KL_T_COMPLEX) {
        return kl_compile_error(L->d, L->line, "cannot store %s into an "
                                "array of %s", vt->name, at->elem->name);
    }
    int32_t p = element_address(L, in->args[0], in->nargs - 2, in->args + 2,
                                in->imm.i);
    if (p < 0) {
        return -1;
    }
    int32_t v = kl_lw_conv(L, val(L, in->args[1]), at->elem);
    return set(L, old, kl_lw_e2(L, KL_OP_store, kl_void, p, v)) < 0 ? -1 : 0;
}

static int
lower_getattr(Lower *L, int32_t old)
{
    const KlInst *in = OLD(L, old);
    const KlType *t = OLD(L, in->args[0])->type;
    int32_t x = val(L, in->args[0]);
    if (x < 0) {
        return -1;
    }
    if (in->aux == KL_ATTR_REAL || in->aux == KL_ATTR_IMAG) {
        if (!kl_type_is_scalar(t)) {
            return kl_compile_error(L->d, L->line, "%s has no attribute %s",
                                    t->name, in->aux == KL_ATTR_REAL
                                    ? "real" : "imag");
        }
        const KlType *r = kl_type_strong(in->type);
        if (t->kind == KL_T_COMPLEX) {
            int32_t p = in->aux == KL_ATTR_REAL ? kl_lw_re(L, x)
                                                : kl_lw_im(L, x);
            return set(L, old, kl_lw_conv(L, p, r));
        }
        if (in->aux == KL_ATTR_REAL) {
            return set(L, old, kl_lw_conv(L, x, r));
        }
        return set(L, old, r->kind == KL_T_FLOAT ? kl_lw_cf(L, r, 0.0)
                                                 : kl_lw_ci(L, r, 0));
    }
    if (t->kind != KL_T_ARRAY) {
        return kl_compile_error(L->d, L->line, "%s has no attribute shape, "
                                "size or ndim", t->name);
    }
    if (in->aux == KL_ATTR_NDIM) {
        return set(L, old, kl_lw_ci(L, kl_i64, t->ndim));
    }
    int32_t *items = kl_arena_alloc(&L->f->mod->arena,
                                    sizeof(int32_t) * (size_t)(t->ndim + 1));
    if (items == NULL) {
        return fail(L);
    }
    for (int j = 0; j < t->ndim; j++) {
        items[j] = kl_lw_e1(L, KL_OP_dim, kl_i64, x);
        if (items[j] < 0) {
            return -1;
        }
        L->f->insts[items[j]].imm.i = j;
    }
    if (in->aux == KL_ATTR_SHAPE) {
        L->shp[old] = items;
        L->vmap[old] = -1;
        return 0;
    }
    int32_t size = t->ndim ? items[0] : kl_lw_ci(L, kl_i64, 1);
    for (int j = 1; j < t->ndim; j++) {
        size = kl_lw_bin(L, KL_OP_mul, size, items[j]);
    }
    return set(L, old, size);
}

/* ---- calls ------------------------------------------------------------ */

static int
lower_call(Lower *L, int32_t old)
{
    const KlInst *in = OLD(L, old);
    KlModule *m = L->f->mod;
    if (in->aux < 0 || in->aux >= m->nfuncs) {
        return kl_internal_error(L->d, "lower: call to missing function %d",
                                 in->aux);
    }
    const KlFunc *callee = m->funcs[in->aux];
    if (callee->nparams != in->nargs) {
        return kl_compile_error(L->d, L->line, "%s() takes %d arguments "
                                "(%d given)", callee->name, callee->nparams,
                                in->nargs);
    }
    int32_t *args = malloc(sizeof(int32_t) * (size_t)(in->nargs + 1));
    if (args == NULL) {
        return fail(L);
    }
    int rc = 0;
    for (int32_t i = 0; i < in->nargs && rc == 0; i++) {
        const KlType *pt = callee->param_types[i];
        int32_t v = val(L, in->args[i]);
        if (kl_type_is_scalar(pt)) {
            v = kl_lw_conv(L, v, pt);
        }
        else if (OLD(L, in->args[i])->type != pt) {
            v = kl_compile_error(L->d, L->line, "cannot pass %s as %s",
                                 OLD(L, in->args[i])->type->name, pt->name);
        }
        args[i] = v;
        rc = v < 0 ? -1 : 0;
    }
    const KlType *rt = callee->ret_type ? callee->ret_type : in->type;
    int32_t id = -1;
    if (rc == 0) {
        id = kl_lw_emit(L, KL_OP_call,
                        is_nothing(rt) ? kl_void : kl_type_strong(rt),
                        in->nargs, args);
    }
    free(args);
    if (id < 0) {
        return -1;
    }
    L->f->insts[id].imm.i = in->aux;
    if (is_nothing(in->type)) {
        L->vmap[old] = -1;
        return 0;
    }
    if (is_nothing(rt)) {
        return kl_internal_error(L->d, "lower: value of a call returning None");
    }
    return set(L, old, kl_lw_conv(L, id, in->type));
}

/* ---- terminators and plain instructions ------------------------------ */

static int
lower_jump(Lower *L, int32_t old)
{
    const KlInst *in = OLD(L, old);
    int32_t t = (int32_t)in->imm.i;
    if (t < 0 || t >= L->onb || L->ob[t].nparams != in->nargs) {
        return kl_internal_error(L->d, "lower: bad jump to b%d", t);
    }
    int32_t n = 0, cap = L->f->blocks[t].nparams + 1;
    int32_t *args = malloc(sizeof(int32_t) * (size_t)cap);
    if (args == NULL) {
        return fail(L);
    }
    int rc = 0;
    for (int32_t j = 0; j < in->nargs && rc == 0; j++) {
        const KlType *pt = OLD(L, L->ob[t].insts.items[j])->type;
        int32_t a = in->args[j];
        if (pt->kind == KL_T_SHAPE) {
            if (L->shp[a] == NULL) {
                rc = kl_internal_error(L->d, "lower: shape %%%d missing", a);
                break;
            }
            for (int k = 0; k < pt->ndim; k++) {
                args[n++] = L->shp[a][k];
            }
        }
        else if (!is_nothing(pt)) {
            int32_t v = kl_lw_conv(L, val(L, a), pt);
            rc = v < 0 ? -1 : 0;
            args[n++] = v;
        }
    }
    if (rc == 0 && n != L->f->blocks[t].nparams) {
        rc = kl_internal_error(L->d, "lower: jump arity mismatch to b%d", t);
    }
    if (rc == 0 && kl_jump(L->f, L->cur, t, n, args, L->line) < 0) {
        rc = fail(L);
    }
    free(args);
    return rc;
}

static int
lower_term(Lower *L, int32_t old)
{
    const KlInst *in = OLD(L, old);
    int32_t id;
    switch (in->op) {
    case KL_OP_jump:
        return lower_jump(L, old);
    case KL_OP_branch:
        id = kl_lw_truth(L, val(L, in->args[0]));
        if (id < 0) {
            return -1;
        }
        return kl_branch(L->f, L->cur, id, (int32_t)in->imm.i, in->aux,
                         L->line) < 0 ? fail(L) : 0;
    case KL_OP_ret: {
        const KlType *rt = L->f->ret_type;
        if (is_nothing(rt) || in->nargs == 0) {
            if (!is_nothing(rt)) {
                return kl_internal_error(L->d, "lower: bare return in a "
                                         "function returning %s", rt->name);
            }
            return kl_lw_emit(L, KL_OP_ret, kl_void, 0, NULL) < 0 ? -1 : 0;
        }
        if (!kl_type_is_scalar(rt)) {
            return kl_compile_error(L->d, L->line, "cannot return %s",
                                    rt->name);
        }
        id = kl_lw_conv(L, val(L, in->args[0]), rt);
        return kl_lw_e1(L, KL_OP_ret, kl_void, id) < 0 ? -1 : 0;
    }
    case KL_OP_raise: {
        int32_t payload[3];
        if (in->nargs > 3) {
            return kl_internal_error(L->d, "lower: raise with %d operands",
                                     in->nargs);
        }
        for (int32_t j = 0; j < in->nargs; j++) {
            payload[j] = kl_lw_conv(L, val(L, in->args[j]), kl_i64);
        }
        id = kl_lw_emit(L, KL_OP_raise, kl_void, in->nargs, payload);
        if (id < 0) {
            return -1;
        }
        L->f->insts[id].imm.i = in->imm.i;
        return 0;
    }
    default:
        return kl_lw_emit(L, KL_OP_unreachable, kl_void, 0, NULL) < 0 ? -1
                                                                        : 0;
    }
}

static int
lower_const(Lower *L, int32_t old)
{
    const KlInst *in = OLD(L, old);
    const KlType *t = kl_type_strong(in->type);
    switch (t->kind) {
    case KL_T_NONE:
    case KL_T_VOID:
        L->vmap[old] = -1;
        return 0;
    case KL_T_BOOL:
    case KL_T_INT:
        return set(L, old, kl_lw_ci(L, t, wrap_int(in->imm.i, t)));
    case KL_T_FLOAT:
        return set(L, old, kl_lw_cf(L, t, in->imm.f));
    case KL_T_COMPLEX: {
        int32_t id = kl_lw_emit(L, KL_OP_const, t, 0, NULL);
        if (id >= 0) {
            L->f->insts[id].imm.c.re = in->imm.c.re;
            L->f->insts[id].imm.c.im = in->imm.c.im;
        }
        return set(L, old, id);
    }
    default:
        return kl_compile_error(L->d, L->line, "unsupported constant of type "
                                "%s", t->name);
    }
}

/* An undef (or the items of an undef shape tuple). */
static int
lower_undef(Lower *L, int32_t old)
{
    const KlType *t = OLD(L, old)->type;
    if (is_nothing(t)) {
        L->vmap[old] = -1;
        return 0;
    }
    if (t->kind == KL_T_SHAPE) {
        int32_t *items = kl_arena_alloc(&L->f->mod->arena,
                                        sizeof(int32_t) * (size_t)(t->ndim + 1));
        if (items == NULL) {
            return fail(L);
        }
        for (int j = 0; j < t->ndim; j++) {
            items[j] = kl_lw_emit(L, KL_OP_undef, kl_i64, 0, NULL);
            if (items[j] < 0) {
                return -1;
            }
        }
        L->shp[old] = items;
        return 0;
    }
    return set(L, old, kl_lw_emit(L, KL_OP_undef, kl_type_strong(t), 0, NULL));
}

/* A primitive op already present before lowering: operands are mapped and
 * cast to the types ops.h requires. */
static int
copy_primitive(Lower *L, int32_t old)
{
    const KlInst *in = OLD(L, old);
    const KlType *t = kl_type_strong(in->type);
    int32_t *args = malloc(sizeof(int32_t) * (size_t)(in->nargs + 1));
    if (args == NULL) {
        return fail(L);
    }
    const KlType *common = NULL;
    if (in->op == KL_OP_cmp && in->nargs == 2) {
        common = kl_type_strong(kl_type_promote(OLD(L, in->args[0])->type,
                                                OLD(L, in->args[1])->type));
    }
    int rc = 0;
    for (int32_t j = 0; j < in->nargs && rc == 0; j++) {
        int32_t v = val(L, in->args[j]);
        switch (in->op) {
        case KL_OP_add: case KL_OP_sub: case KL_OP_mul: case KL_OP_div:
        case KL_OP_rem: case KL_OP_neg: case KL_OP_and: case KL_OP_or:
        case KL_OP_xor: case KL_OP_shl: case KL_OP_shr: case KL_OP_math:
            v = kl_lw_conv(L, v, t);
            break;
        case KL_OP_select:
            v = kl_lw_conv(L, v, j == 0 ? kl_bool : t);
            break;
        case KL_OP_cmp:
            v = kl_lw_conv(L, v, common);
            break;
        default:
            break;
        }
        args[j] = v;
        rc = v < 0 ? -1 : 0;
    }
    int32_t id = rc == 0 ? kl_lw_emit(L, in->op, t, in->nargs, args) : -1;
    free(args);
    if (id < 0) {
        return -1;
    }
    L->f->insts[id].aux = in->aux;
    L->f->insts[id].imm = in->imm;
    return set(L, old, id);
}

/* The one switch over Python-level opcodes. */
static int
lower_inst(Lower *L, int32_t old)
{
    const KlInst *in = OLD(L, old);
    L->line = in->line;
    if (in->type == NULL && !(kl_op_flags(in->op) & KL_TERM)
        && in->op != KL_OP_py_setitem) {
        return kl_internal_error(L->d, "%s: lower: %%%d untyped", L->f->name,
                                 old);
    }
    if (kl_op_flags(in->op) & KL_TERM) {
        return lower_term(L, old);
    }
    switch (in->op) {
    case KL_OP_const:
        return lower_const(L, old);
    case KL_OP_arg: {
        int32_t id = kl_lw_emit(L, KL_OP_arg, kl_type_strong(in->type), 0,
                                NULL);
        if (id >= 0) {
            L->f->insts[id].imm.i = in->imm.i;
        }
        return set(L, old, id);
    }
    case KL_OP_bparam:
        return kl_internal_error(L->d, "lower: block param after the first "
                                 "instructions");
    case KL_OP_undef:
        return lower_undef(L, old);
    case KL_OP_py_binop:
        if (in->imm.i == 1) {
            return set(L, old, lower_range_advance(L, in));
        }
        return set(L, old, mark_reduction_step(L, in, lower_binop(L, in)));
    case KL_OP_py_unop:
        return set(L, old, lower_unop(L, in));
    case KL_OP_py_cmp:
        return set(L, old, lower_cmp(L, in));
    case KL_OP_py_truth:
        return set(L, old, kl_lw_truth(L, val(L, in->args[0])));
    case KL_OP_py_getitem:
        return lower_getitem(L, old);
    case KL_OP_py_setitem:
        return lower_setitem(L, old);
    case KL_OP_py_getattr:
        return lower_getattr(L, old);
    case KL_OP_py_call:
        return lower_call(L, old);
    case KL_OP_py_builtin:
        return kl_lw_builtin(L, old);
    case KL_OP_py_range_test:
        return set(L, old, lower_range_test(L, in));
    default:
        return copy_primitive(L, old);
    }
}

/* ---- driver ------------------------------------------------------------ */

/* Old successors of old block b (0 to 2). */
static int
successors(Lower *L, int32_t b, int32_t out[2])
{
    const KlVec *v = &L->ob[b].insts;
    if (v->len == 0) {
        return 0;
    }
    const KlInst *t = OLD(L, v->items[v->len - 1]);
    if (t->op == KL_OP_jump) {
        out[0] = (int32_t)t->imm.i;
        return 1;
    }
    if (t->op == KL_OP_branch) {
        out[0] = (int32_t)t->imm.i;
        out[1] = t->aux;
        return 2;
    }
    return 0;
}

/* Reverse postorder of the blocks reachable from the entry, so that every
 * definition is lowered before its uses.  *n receives the count. */
static int32_t *
reverse_postorder(Lower *L, int32_t *n)
{
    int32_t nb = L->onb;
    int32_t *order = malloc(sizeof(int32_t) * (size_t)(nb + 1));
    int32_t *stack = malloc(sizeof(int32_t) * (size_t)(nb + 1));
    int8_t *next = calloc((size_t)nb + 1, 1);
    if (order == NULL || stack == NULL || next == NULL) {
        free(order);
        free(stack);
        free(next);
        return NULL;
    }
    int32_t top = 0, done = nb;
    stack[top++] = 0;
    next[0] = 1;    /* 1 + index of the next successor to visit */
    while (top > 0) {
        int32_t b = stack[top - 1];
        int32_t succ[2];
        int ns = successors(L, b, succ);
        if (next[b] - 1 < ns) {
            int32_t s = succ[next[b] - 1];
            next[b]++;
            if (s >= 0 && s < nb && next[s] == 0) {
                next[s] = 1;
                stack[top++] = s;
            }
            continue;
        }
        order[--done] = b;
        top--;
    }
    free(stack);
    free(next);
    *n = nb - done;
    memmove(order, order + done, sizeof(int32_t) * (size_t)*n);
    return order;
}

/* Creates new block b's params from old block b's. */
static int
make_params(Lower *L, int32_t b)
{
    for (int32_t p = 0; p < L->ob[b].nparams; p++) {
        int32_t old = L->ob[b].insts.items[p];
        const KlType *t = OLD(L, old)->type;
        if (t == NULL) {
            return kl_internal_error(L->d, "lower: untyped block param");
        }
        if (is_nothing(t)) {
            continue;
        }
        if (t->kind == KL_T_SHAPE) {
            int32_t *items = kl_arena_alloc(&L->f->mod->arena,
                                            sizeof(int32_t)
                                            * (size_t)(t->ndim + 1));
            if (items == NULL) {
                return fail(L);
            }
            for (int j = 0; j < t->ndim; j++) {
                items[j] = kl_bparam_add(L->f, b, kl_i64);
                if (items[j] < 0) {
                    return fail(L);
                }
            }
            L->shp[old] = items;
            continue;
        }
        L->vmap[old] = kl_bparam_add(L->f, b, kl_type_strong(t));
        if (L->vmap[old] < 0) {
            return fail(L);
        }
    }
    return 0;
}

static int
lower_block(Lower *L, int32_t b)
{
    L->cur = b;
    L->loop = L->ob[b].loop;
    const KlVec *v = &L->ob[b].insts;
    for (int32_t i = L->ob[b].nparams; i < v->len; i++) {
        if (lower_inst(L, v->items[i]) < 0) {
            return -1;
        }
    }
    if (v->len == 0 || !(kl_op_flags(OLD(L, v->items[v->len - 1])->op)
                         & KL_TERM)) {
        return kl_internal_error(L->d, "%s: lower: b%d has no terminator",
                                 L->f->name, b);
    }
    return 0;
}

int
kl_lower(KlFunc *f, KlDiag *d)
{
    KlArena *arena = &f->mod->arena;
    Lower L;
    memset(&L, 0, sizeof(L));
    L.f = f;
    L.d = d;
    L.oi = f->insts;
    L.on = f->ninsts;
    L.ob = f->blocks;
    L.onb = f->nblocks;
    L.line = f->firstline;
    L.vmap = kl_arena_alloc(arena, sizeof(int32_t) * (size_t)(L.on + 1));
    L.shp = kl_arena_alloc(arena, sizeof(int32_t *) * (size_t)(L.on + 1));
    if (L.vmap == NULL || L.shp == NULL) {
        return fail(&L);
    }
    for (int32_t i = 0; i < L.on; i++) {
        L.vmap[i] = -1;
    }
    int32_t nord;
    int32_t *order = reverse_postorder(&L, &nord);
    if (order == NULL) {
        return fail(&L);
    }
    char *reached = calloc((size_t)L.onb + 1, 1);
    if (reached == NULL) {
        free(order);
        return fail(&L);
    }
    /* fresh tables; old block b is new block b */
    f->insts = NULL;
    f->ninsts = f->cap_insts = 0;
    f->blocks = NULL;
    f->nblocks = f->cap_blocks = 0;
    int rc = 0;
    for (int32_t b = 0; b < L.onb && rc == 0; b++) {
        if (kl_block_new(f) != b) {
            rc = fail(&L);
            break;
        }
        f->blocks[b].loop = L.ob[b].loop;
    }
    for (int32_t b = 0; b < L.onb && rc == 0; b++) {
        rc = make_params(&L, b);
    }
    for (int32_t k = 0; k < nord && rc == 0; k++) {
        reached[order[k]] = 1;
        rc = lower_block(&L, order[k]);
    }
    for (int32_t b = 0; b < L.onb && rc == 0; b++) {
        if (!reached[b]) {
            L.cur = b;
            rc = kl_lw_emit(&L, KL_OP_unreachable, kl_void, 0, NULL) < 0 ? -1
                                                                         : 0;
        }
    }
    free(order);
    free(reached);
    return rc;
}
