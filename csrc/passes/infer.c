/* infer.c: type inference for Python-level functions.
 *
 * Gives every instruction of a function built by the frontend its type, from
 * the parameter types of the specialisation being compiled, following the
 * language rules (NumPy 2 / NEP 50 promotion with weak Python
 * scalars).  Block parameters take the union of the values jumped to them,
 * so the pass iterates over the blocks until no type changes; types only
 * widen, so it terminates (a round cap guards it anyway).  Rounds before
 * the last are "quiet": errors there may come from types that are still
 * narrow, so they only leave the value unknown.  The last round runs on
 * the settled types and reports the first error in block order.
 *
 * Calls are resolved through KlModule.resolve_call, which compiles the
 * callee for the argument types.  A call is resolved only once the other
 * types have settled, one call at a time, so callees are specialised for
 * argument types that still hold at the end rather than for intermediate
 * ones.  Each call's resolution (or failure) is cached per argument types.
 */
#include "../compile.h"

#include <stdio.h>
#include <string.h>

/* Most rounds before giving up: types climb a lattice a few levels high,
 * so real functions settle in a handful. */
#define MAX_ROUNDS 1000

/* Cached outcome of resolving one py_call for one tuple of argument types. */
typedef struct CallCache {
    const KlType **argtypes;    /* argument types resolved for (arena) */
    int32_t func;               /* module function index, -1 on failure */
    KlDiag *err;                /* the failure's diagnostic (arena) */
} CallCache;

/* State of one kl_infer run. */
typedef struct Infer {
    KlFunc *f;
    KlDiag *d;                  /* where errors go: the caller's or scratch */
    KlDiag scratch;             /* swallows errors of quiet rounds */
    int report;                 /* final round: errors are reported */
    int resolve_budget;         /* calls this round may still resolve */
    int resolved;               /* calls resolved (or failed) this round */
    int changed;                /* some type changed this round */
    int annotated;              /* f->ret_type was given by the caller */
    const KlType *ret_join;     /* union of returned types this round */
    uint8_t *reach;             /* per block: reachable from the entry */
    KlVec *incoming;            /* per block: ids of reachable jumps to it */
    CallCache **calls;          /* per instruction, for py_call only */
} Infer;

/* Marks "an error was recorded" among the type results (NULL means
 * "unknown yet": some operand has no type). */
static const KlType error_mark;
#define ERR (&error_mark)

static const char *const binop_sym[] = {
    "+", "-", "*", "/", "//", "%", "**", "<<", ">>", "&", "|", "^",
};
static const char *const unop_sym[] = {"-", "+", "not", "~"};
static const char *const cmp_sym[] = {"<", "<=", "==", "!=", ">", ">="};

/* ---- small helpers ---------------------------------------------------- */

static const KlType *
type_of(const Infer *S, int32_t v)
{
    return S->f->insts[v].type;
}

static int
is_int(const KlType *t)
{
    return t->kind == KL_T_INT;
}

static int
is_intlike(const KlType *t)
{
    return t->kind == KL_T_INT || t->kind == KL_T_BOOL;
}

static int
is_real(const KlType *t)
{
    return t->kind == KL_T_BOOL || t->kind == KL_T_INT
           || t->kind == KL_T_FLOAT;
}

static int
is_complex(const KlType *t)
{
    return t->kind == KL_T_COMPLEX;
}

/* The type an operand counts as in arithmetic: a Python bool is a Python
 * int; a NumPy bool stays a bool, the lowest kind (np.True_ + 1 is int64,
 * np.True_ + np.int8(1) is int8: kl_type_promote). */
static const KlType *
arith(const KlType *t)
{
    return t == kl_pybool ? kl_pyint : t;
}

/* The result type of arithmetic operator op on two bools at least one of
 * which is a NumPy bool, as NumPy 2 types it: + and * stay bool (or, and),
 * / is float64, // % ** << >> compute in int8; NULL for - (a TypeError in
 * NumPy). */
static const KlType *
numpy_bool_arith(KlBinop op)
{
    switch (op) {
    case KL_BIN_ADD:
    case KL_BIN_MUL:
        return kl_bool;
    case KL_BIN_TRUEDIV:
        return kl_f64;
    case KL_BIN_SUB:
        return NULL;
    default:
        return kl_i8;
    }
}

/* The float type of a complex type's parts, keeping its weakness. */
static const KlType *
complex_part(const KlType *t)
{
    return t == kl_pycomplex ? kl_pyfloat : kl_type_float(t->bits / 2);
}

/* Records a compile error at `line` and returns ERR. */
static const KlType *
fail(Infer *S, int line, const char *fmt, ...)
{
    char msg[sizeof(S->d->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kl_compile_error(S->d, line, "%s", msg);
    return ERR;
}

static const KlType *
internal(Infer *S, const char *what, int32_t id)
{
    kl_internal_error(S->d, "%s: %%%d: %s", S->f->name, id, what);
    return ERR;
}

/* A type's name in messages: Python's None for none. */
static const char *
show(const KlType *t)
{
    return t->kind == KL_T_NONE ? "None" : t->name;
}

/* Python's name for a scalar type in "cannot be interpreted as an
 * integer" messages: int/float/complex for Python scalars. */
static void
py_type_name(const KlType *t, char *buf, size_t size)
{
    if (t->weak) {
        snprintf(buf, size, "%s", kl_type_pyname(t));
    }
    else if (kl_type_is_numeric(t)) {
        snprintf(buf, size, "numpy.%s", t->name);
    }
    else {
        snprintf(buf, size, "%s", t->name);
    }
}

/* Union of two types meeting at a join (block param, min/max, returns):
 * equal types; numeric types promoted (bool with a number is that
 * number; a Python and a NumPy bool, a NumPy bool); arrays differing only in layout or read-only-ness.  NULL when
 * they cannot share one variable. */
static const KlType *
join(const KlType *a, const KlType *b)
{
    if (a == b) {
        return a;
    }
    if (kl_type_is_scalar(a) && kl_type_is_scalar(b)) {
        if (a->kind == KL_T_BOOL && b->kind == KL_T_BOOL) {
            return kl_type_promote(a, b);   /* NumPy's if either is */
        }
        if (a->kind == KL_T_BOOL) {
            return b;
        }
        if (b->kind == KL_T_BOOL) {
            return a;
        }
        return kl_type_promote(a, b);
    }
    if (a->kind == KL_T_ARRAY && b->kind == KL_T_ARRAY && a->elem == b->elem
        && a->ndim == b->ndim) {
        return kl_type_array(a->elem, a->ndim, a->layout == b->layout
                             ? a->layout : KL_LAYOUT_ANY,
                             a->readonly || b->readonly);
    }
    return NULL;
}

/* Index of the parameter array value v is a copy of, or -1 when it is not
 * clearly one (used to name arrays in messages). */
static int
param_of(const Infer *S, int32_t v, int depth)
{
    const KlInst *in = &S->f->insts[v];
    if (in->op == KL_OP_arg) {
        return (int)in->imm.i;
    }
    if (in->op != KL_OP_bparam || depth > 8) {
        return -1;
    }
    int found = -1;
    const KlVec *inc = &S->incoming[in->block];
    for (int32_t j = 0; j < inc->len; j++) {
        int32_t src = S->f->insts[inc->items[j]].args[in->imm.i];
        if (src == v || S->f->insts[src].op == KL_OP_undef) {
            continue;
        }
        int p = param_of(S, src, depth + 1);
        if (p < 0 || (found >= 0 && p != found)) {
            return -1;
        }
        found = p;
    }
    return found;
}

/* ---- one function per op family --------------------------------------- */

/* Block param: its old type joined with every value jumped to it from a
 * reachable block (undef ignored).  Keeping the old type makes params only
 * widen, which is what makes the iteration terminate. */
static const KlType *
infer_bparam(Infer *S, int32_t id)
{
    const KlInst *in = &S->f->insts[id];
    const KlVec *inc = &S->incoming[in->block];
    const KlType *acc = in->type;
    for (int32_t j = 0; j < inc->len; j++) {
        const KlInst *jmp = &S->f->insts[inc->items[j]];
        int32_t src = jmp->args[in->imm.i];
        const KlType *t = type_of(S, src);
        if (S->f->insts[src].op == KL_OP_undef || t == NULL) {
            continue;
        }
        const KlType *u = acc ? join(acc, t) : t;
        if (u == NULL) {
            if (S->report) {
                return fail(S, in->line > 0 ? in->line : jmp->line,
                            "a variable holds %s on one path and %s on "
                            "another", show(acc), show(t));
            }
            continue;
        }
        acc = u;
    }
    return acc;
}

/* Message for an operator that does not apply to its operand types. */
static const KlType *
unsupported(Infer *S, const KlInst *in, const KlType *a, const KlType *b)
{
    return fail(S, in->line, "unsupported operand type(s) for %s: '%s' and "
                "'%s'", binop_sym[in->aux], a->name, b->name);
}

static const KlType *
infer_binop(Infer *S, int32_t id)
{
    const KlInst *in = &S->f->insts[id];
    const KlType *a = type_of(S, in->args[0]);
    const KlType *b = type_of(S, in->args[1]);
    if (a == NULL || b == NULL) {
        return NULL;
    }
    if (in->aux < KL_BIN_ADD || in->aux > KL_BIN_XOR) {
        return internal(S, "bad binary operator", id);
    }
    if (a->kind == KL_T_ARRAY || b->kind == KL_T_ARRAY) {
        return fail(S, in->line, "array expressions are not supported; "
                    "index the array");
    }
    if (!kl_type_is_scalar(a) || !kl_type_is_scalar(b)) {
        return unsupported(S, in, a, b);
    }
    int bitwise = in->aux >= KL_BIN_AND;
    if (a->kind == KL_T_BOOL && b->kind == KL_T_BOOL) {
        if (bitwise) {
            return a->weak && b->weak ? kl_pybool : kl_bool;
        }
        if (!a->weak || !b->weak) {
            const KlType *t = numpy_bool_arith((KlBinop)in->aux);
            return t != NULL ? t : fail(S, in->line, "numpy boolean "
                                        "subtract, the `-` operator, is not "
                                        "supported, use the bitwise_xor, the "
                                        "`^` operator, or the logical_xor "
                                        "function instead.");
        }
    }
    const KlType *x = arith(a), *y = arith(b), *t;
    switch ((KlBinop)in->aux) {
    case KL_BIN_LSHIFT:
    case KL_BIN_RSHIFT:
    case KL_BIN_AND:
    case KL_BIN_OR:
    case KL_BIN_XOR:
        /* ints only, and no int type may hold both (uint64 with int64) */
        t = is_intlike(x) && is_intlike(y) ? kl_type_promote(x, y) : NULL;
        return t && is_int(t) ? t : unsupported(S, in, a, b);
    case KL_BIN_TRUEDIV:
        if (is_intlike(x) && is_intlike(y)) {
            return x->weak && y->weak ? kl_pyfloat : kl_f64;
        }
        return kl_type_promote(x, y);
    case KL_BIN_FLOORDIV:
    case KL_BIN_MOD:
        if (is_complex(x) || is_complex(y)) {
            return unsupported(S, in, a, b);
        }
        return kl_type_promote(x, y);
    default:
        return kl_type_promote(x, y);
    }
}

static const KlType *
infer_unop(Infer *S, int32_t id)
{
    const KlInst *in = &S->f->insts[id];
    const KlType *a = type_of(S, in->args[0]);
    if (a == NULL) {
        return NULL;
    }
    if (in->aux < KL_UN_NEG || in->aux > KL_UN_INVERT) {
        return internal(S, "bad unary operator", id);
    }
    if (a->kind == KL_T_ARRAY) {
        return fail(S, in->line, "array expressions are not supported; "
                    "index the array");
    }
    if (kl_type_is_scalar(a)) {
        if (in->aux == KL_UN_NOT) {
            return kl_pybool;
        }
        if (a == kl_bool && in->aux != KL_UN_INVERT) {
            return fail(S, in->line, "the numpy boolean %s, the `%s` "
                        "operator, is not supported", in->aux == KL_UN_NEG
                        ? "negative" : "positive", unop_sym[in->aux]);
        }
        if (in->aux != KL_UN_INVERT || is_intlike(a)) {
            return arith(a);    /* ~np.True_ is np.False_ */
        }
    }
    return fail(S, in->line, "bad operand type for unary %s: '%s'",
                unop_sym[in->aux], a->name);
}

static const KlType *
infer_cmp(Infer *S, int32_t id)
{
    const KlInst *in = &S->f->insts[id];
    const KlType *a = type_of(S, in->args[0]);
    const KlType *b = type_of(S, in->args[1]);
    if (a == NULL || b == NULL) {
        return NULL;
    }
    if (in->aux < KL_CMP_LT || in->aux > KL_CMP_GE) {
        return internal(S, "bad comparison", id);
    }
    if (a->kind == KL_T_ARRAY || b->kind == KL_T_ARRAY) {
        return fail(S, in->line, "array expressions are not supported; "
                    "index the array");
    }
    int equality = in->aux == KL_CMP_EQ || in->aux == KL_CMP_NE;
    if (!kl_type_is_scalar(a) || !kl_type_is_scalar(b)
        || (!equality && (is_complex(a) || is_complex(b)))) {
        return fail(S, in->line, "'%s' not supported between instances of "
                    "'%s' and '%s'", cmp_sym[in->aux], a->name, b->name);
    }
    return a->weak && b->weak ? kl_pybool : kl_bool;
}

static const KlType *
infer_truth(Infer *S, int32_t id)
{
    const KlInst *in = &S->f->insts[id];
    const KlType *a = type_of(S, in->args[0]);
    if (a == NULL) {
        return NULL;
    }
    if (kl_type_is_scalar(a)) {
        return kl_bool;
    }
    if (a->kind == KL_T_ARRAY) {
        return fail(S, in->line, "the truth value of an array is ambiguous; "
                    "index the array");
    }
    return fail(S, in->line, "the truth value of %s is not supported",
                a->name);
}

/* Checks the index operands args[first..nargs) of an array access: all
 * ints (or bools), exactly one per dimension.  0 when they fit, NULL when
 * one is unknown, ERR on error. */
static const KlType *
check_indices(Infer *S, const KlInst *in, const KlType *arr, int first)
{
    int nidx = in->nargs - first;
    for (int32_t i = first; i < in->nargs; i++) {
        const KlType *t = type_of(S, in->args[i]);
        if (t == NULL) {
            return NULL;
        }
        if (!is_intlike(t)) {
            return fail(S, in->line, "only integers, slices (`:`), ellipsis "
                        "(`...`), numpy.newaxis (`None`) and integer or "
                        "boolean arrays are valid indices (got %s)",
                        t->name);
        }
    }
    if (nidx < arr->ndim) {
        return fail(S, in->line, "slices and sub-arrays are not supported "
                    "yet");
    }
    if (nidx > arr->ndim) {
        return fail(S, in->line, "too many indices for array: array is "
                    "%d-dimensional, but %d were indexed", arr->ndim, nidx);
    }
    return arr;
}

static const KlType *
infer_getitem(Infer *S, int32_t id)
{
    const KlInst *in = &S->f->insts[id];
    if (in->nargs < 1) {
        return internal(S, "getitem without operands", id);
    }
    const KlType *a = type_of(S, in->args[0]);
    if (a == NULL) {
        return NULL;
    }
    if (a->kind == KL_T_ARRAY) {
        const KlType *r = check_indices(S, in, a, 1);
        return r == a ? kl_type_strong(a->elem) : r;
    }
    if (a->kind == KL_T_SHAPE) {
        const KlType *k = in->nargs == 2 ? type_of(S, in->args[1]) : kl_pyint;
        if (k == NULL) {
            return NULL;
        }
        if (in->nargs != 2 || !is_intlike(k)) {
            return fail(S, in->line, "tuple indices must be integers or "
                        "slices, not %s", in->nargs == 2 ? k->name : "tuple");
        }
        return kl_pyint;
    }
    return fail(S, in->line, "'%s' object is not subscriptable", a->name);
}

/* a[i, ...] = v: args are the array, the value, then the indices. */
static const KlType *
infer_setitem(Infer *S, int32_t id)
{
    const KlInst *in = &S->f->insts[id];
    if (in->nargs < 2) {
        return internal(S, "setitem without operands", id);
    }
    const KlType *a = type_of(S, in->args[0]);
    const KlType *v = type_of(S, in->args[1]);
    if (a == NULL || v == NULL) {
        return NULL;
    }
    if (a->kind != KL_T_ARRAY) {
        return fail(S, in->line, "'%s' object does not support item "
                    "assignment", a->kind == KL_T_SHAPE ? "tuple" : a->name);
    }
    const KlType *r = check_indices(S, in, a, 2);
    if (r != a) {
        return r;
    }
    if (a->readonly) {
        int p = param_of(S, in->args[0], 0);
        char name[128] = "";
        if (p >= 0 && p < S->f->nparams && S->f->param_names) {
            snprintf(name, sizeof(name), " '%s'", S->f->param_names[p]);
        }
        kl_error(S->d, KL_DIAG_VALUE, in->line,
                 "kernel writes to read-only array%s", name);
        return ERR;
    }
    if (v->kind == KL_T_ARRAY) {
        return fail(S, in->line, "setting an array element with a sequence "
                    "is not supported");
    }
    if (!kl_type_is_scalar(v)) {
        return fail(S, in->line, "cannot store %s into an element of %s",
                    v->name, a->name);
    }
    if (is_complex(v) && !is_complex(a->elem)) {
        return fail(S, in->line, "cannot store %s into an element of %s "
                    "(it would discard the imaginary part)", v->name,
                    a->name);
    }
    return kl_void;
}

static const KlType *
infer_getattr(Infer *S, int32_t id)
{
    static const char *const names[] = {"shape", "size", "ndim", "real",
                                        "imag"};
    const KlInst *in = &S->f->insts[id];
    const KlType *a = type_of(S, in->args[0]);
    if (a == NULL) {
        return NULL;
    }
    if (in->aux < KL_ATTR_SHAPE || in->aux > KL_ATTR_IMAG) {
        return internal(S, "bad attribute", id);
    }
    switch ((KlAttr)in->aux) {
    case KL_ATTR_SHAPE:
        if (a->kind == KL_T_ARRAY) {
            return kl_type_shape(a->ndim);
        }
        break;
    case KL_ATTR_SIZE:
    case KL_ATTR_NDIM:
        if (a->kind == KL_T_ARRAY) {
            return kl_pyint;
        }
        break;
    case KL_ATTR_REAL:
    case KL_ATTR_IMAG:
        if (is_complex(a)) {
            return complex_part(a);
        }
        if (is_real(a)) {
            return a;
        }
        if (a->kind == KL_T_ARRAY) {
            return fail(S, in->line, "array expressions are not supported; "
                        "index the array");
        }
        break;
    }
    return fail(S, in->line, "'%s' object has no attribute '%s'", a->name,
                names[in->aux]);
}

/* How a builtin is typed. */
typedef enum BRule {
    B_NONE,         /* no rule: an internal error */
    B_ABS,          /* abs(x): same type; complex -> its part type */
    B_MINMAX,       /* min/max(a, b, ...): join of all */
    B_LEN,          /* len(array or shape) -> int */
    B_INT,          /* int(real) -> int */
    B_FLOAT,        /* float(real) -> float */
    B_BOOL,         /* bool(scalar) -> bool */
    B_COMPLEX,      /* complex(x) or complex(real, real) -> complex */
    B_ROUND,        /* round(real) -> int */
    B_CONJ,         /* x.conjugate(): same type */
    B_NPSCALAR,     /* np.float32(x), ...: that (strong) type */
    B_MATH,         /* math.f(real, ...) -> float */
    B_MATH_INT,     /* math.floor/ceil/trunc(real) -> int */
    B_MATH_BOOL,    /* math.isnan/isinf/isfinite(real) -> bool */
    B_BITS,         /* f64_bits(float64) -> int: its bits */
    B_FROM_BITS,    /* f64_from_bits(int) -> float: the float64 of bits */
} BRule;

static const struct {
    uint8_t rule, min, max;     /* BRule, operand counts (max 255: any) */
} builtin_rules[KL_BI__COUNT] = {
    [KL_BI_abs] = {B_ABS, 1, 1},
    [KL_BI_min] = {B_MINMAX, 2, 255},
    [KL_BI_max] = {B_MINMAX, 2, 255},
    [KL_BI_len] = {B_LEN, 1, 1},
    [KL_BI_int] = {B_INT, 1, 1},
    [KL_BI_float] = {B_FLOAT, 1, 1},
    [KL_BI_bool] = {B_BOOL, 1, 1},
    [KL_BI_complex] = {B_COMPLEX, 1, 2},
    [KL_BI_round] = {B_ROUND, 1, 2},
    [KL_BI_conjugate] = {B_CONJ, 1, 1},
    [KL_BI_sqrt] = {B_MATH, 1, 1},
    [KL_BI_sin] = {B_MATH, 1, 1},
    [KL_BI_cos] = {B_MATH, 1, 1},
    [KL_BI_tan] = {B_MATH, 1, 1},
    [KL_BI_asin] = {B_MATH, 1, 1},
    [KL_BI_acos] = {B_MATH, 1, 1},
    [KL_BI_atan] = {B_MATH, 1, 1},
    [KL_BI_atan2] = {B_MATH, 2, 2},
    [KL_BI_sinh] = {B_MATH, 1, 1},
    [KL_BI_cosh] = {B_MATH, 1, 1},
    [KL_BI_tanh] = {B_MATH, 1, 1},
    [KL_BI_asinh] = {B_MATH, 1, 1},
    [KL_BI_acosh] = {B_MATH, 1, 1},
    [KL_BI_atanh] = {B_MATH, 1, 1},
    [KL_BI_exp] = {B_MATH, 1, 1},
    [KL_BI_exp2] = {B_MATH, 1, 1},
    [KL_BI_expm1] = {B_MATH, 1, 1},
    [KL_BI_log] = {B_MATH, 1, 2},
    [KL_BI_log2] = {B_MATH, 1, 1},
    [KL_BI_log10] = {B_MATH, 1, 1},
    [KL_BI_log1p] = {B_MATH, 1, 1},
    [KL_BI_pow] = {B_MATH, 2, 2},
    [KL_BI_fabs] = {B_MATH, 1, 1},
    [KL_BI_hypot] = {B_MATH, 2, 2},
    [KL_BI_copysign] = {B_MATH, 2, 2},
    [KL_BI_fmod] = {B_MATH, 2, 2},
    [KL_BI_erf] = {B_MATH, 1, 1},
    [KL_BI_erfc] = {B_MATH, 1, 1},
    [KL_BI_gamma] = {B_MATH, 1, 1},
    [KL_BI_lgamma] = {B_MATH, 1, 1},
    [KL_BI_floor] = {B_MATH_INT, 1, 1},
    [KL_BI_ceil] = {B_MATH_INT, 1, 1},
    [KL_BI_trunc] = {B_MATH_INT, 1, 1},
    [KL_BI_isnan] = {B_MATH_BOOL, 1, 1},
    [KL_BI_isinf] = {B_MATH_BOOL, 1, 1},
    [KL_BI_isfinite] = {B_MATH_BOOL, 1, 1},
    [KL_BI_degrees] = {B_MATH, 1, 1},
    [KL_BI_radians] = {B_MATH, 1, 1},
    [KL_BI_np_bool] = {B_NPSCALAR, 0, 1},
    [KL_BI_np_int8] = {B_NPSCALAR, 0, 1},
    [KL_BI_np_int16] = {B_NPSCALAR, 0, 1},
    [KL_BI_np_int32] = {B_NPSCALAR, 0, 1},
    [KL_BI_np_int64] = {B_NPSCALAR, 0, 1},
    [KL_BI_np_uint8] = {B_NPSCALAR, 0, 1},
    [KL_BI_np_uint16] = {B_NPSCALAR, 0, 1},
    [KL_BI_np_uint32] = {B_NPSCALAR, 0, 1},
    [KL_BI_np_uint64] = {B_NPSCALAR, 0, 1},
    [KL_BI_np_float32] = {B_NPSCALAR, 0, 1},
    [KL_BI_np_float64] = {B_NPSCALAR, 0, 1},
    [KL_BI_np_complex64] = {B_NPSCALAR, 0, 2},
    [KL_BI_np_complex128] = {B_NPSCALAR, 0, 2},
    [KL_BI_f64_bits] = {B_BITS, 1, 1},
    [KL_BI_f64_from_bits] = {B_FROM_BITS, 1, 1},
};

/* Checks a builtin's operand count against its rule. */
static const KlType *
check_arity(Infer *S, const KlInst *in, const char *name, int min, int max)
{
    int n = in->nargs;
    if (n >= min && (n <= max || max == 255)) {
        return kl_void;
    }
    if (min == max) {
        return fail(S, in->line, "%s() takes exactly %d argument%s (%d "
                    "given)", name, min, min == 1 ? "" : "s", n);
    }
    if (min == 0) {
        return fail(S, in->line, "%s() takes at most %d argument%s (%d "
                    "given)", name, max, max == 1 ? "" : "s", n);
    }
    if (max == 255) {
        return fail(S, in->line, "%s() takes at least %d arguments (%d "
                    "given)", name, min, n);
    }
    return fail(S, in->line, "%s() takes from %d to %d arguments (%d given)",
                name, min, max, n);
}

/* np.float32(x), np.int8(x), ...: the strong type named by the builtin
 * ("numpy.int8").  Operands are typed.  A real or bool type from a Python
 * complex is NumPy's TypeError, found here; complex(re, im) takes reals. */
static const KlType *
infer_npscalar(Infer *S, const KlInst *in, const char *name)
{
    const KlType *r = kl_type_from_name(name + strlen("numpy."));
    if (r == NULL) {
        return fail(S, in->line, "%s() is not supported", name);
    }
    for (int32_t i = 0; i < in->nargs; i++) {
        const KlType *t = type_of(S, in->args[i]);
        if (!kl_type_is_scalar(t)) {
            return fail(S, in->line, "%s() argument must be a number, not "
                        "%s", name, t->name);
        }
        if (is_complex(t) && in->nargs == 2) {
            return fail(S, in->line, "%s(re, im) takes real numbers, not %s",
                        name, t->name);
        }
        if (is_complex(t) && t->weak && !is_complex(r)
            && r->kind != KL_T_BOOL) {
            return fail(S, in->line, "%s() argument must be a real number, "
                        "not 'complex'", name);
        }
    }
    return r;
}

static const KlType *
infer_builtin(Infer *S, int32_t id)
{
    const KlInst *in = &S->f->insts[id];
    if (in->aux < 0 || in->aux >= KL_BI__COUNT
        || builtin_rules[in->aux].rule == B_NONE) {
        return internal(S, "builtin without a typing rule", id);
    }
    const char *name = kl_builtin_pyname(in->aux);
    if (name[0] == '.') {
        name++;     /* a method: ".conjugate" */
    }
    BRule rule = builtin_rules[in->aux].rule;
    if (check_arity(S, in, name, builtin_rules[in->aux].min,
                    builtin_rules[in->aux].max) == ERR) {
        return ERR;
    }
    for (int32_t i = 0; i < in->nargs; i++) {
        if (type_of(S, in->args[i]) == NULL) {
            return NULL;
        }
    }
    if (rule == B_NPSCALAR) {
        return infer_npscalar(S, in, name);
    }
    const KlType *a = type_of(S, in->args[0]);
    /* operand checks shared by the rules */
    if (rule != B_LEN) {
        for (int32_t i = 0; i < in->nargs; i++) {
            const KlType *t = type_of(S, in->args[i]);
            if (!kl_type_is_scalar(t)) {
                return fail(S, in->line, "%s() argument %d must be a number, "
                            "not %s", name, (int)i + 1, t->name);
            }
            if (is_complex(t) && (rule >= B_MATH || rule == B_MINMAX
                                  || rule == B_INT || rule == B_FLOAT
                                  || rule == B_ROUND
                                  || (rule == B_COMPLEX && in->nargs == 2))) {
                return fail(S, in->line, "%s() does not accept complex "
                            "arguments (got %s)", name, t->name);
            }
        }
    }
    const KlType *t;
    switch (rule) {
    case B_ABS:
        return is_complex(a) ? complex_part(a) : arith(a);
    case B_MINMAX:
        t = a;
        for (int32_t i = 1; i < in->nargs && t != NULL; i++) {
            t = join(t, type_of(S, in->args[i]));
        }
        return t ? t : internal(S, "min/max of scalars failed", id);
    case B_LEN:
        if (a->kind == KL_T_SHAPE || (a->kind == KL_T_ARRAY && a->ndim > 0)) {
            return kl_pyint;
        }
        if (a->kind == KL_T_ARRAY) {
            return fail(S, in->line, "len() of unsized object");
        }
        return fail(S, in->line, "object of type '%s' has no len()",
                    a->name);
    case B_INT:
        if (in->imm.i == 1 && a->kind != KL_T_INT && a->kind != KL_T_BOOL) {
            return fail(S, in->line, "'%s' object cannot be interpreted as "
                        "an integer", a->kind == KL_T_FLOAT ? "float"
                                                            : a->name);
        }
        return kl_pyint;
    case B_MATH_INT:
        return kl_pyint;
    case B_ROUND:
        if (in->nargs == 2) {
            return fail(S, in->line, "round() with ndigits is not supported "
                        "yet");
        }
        return kl_pyint;
    case B_FLOAT:
    case B_MATH:
        return kl_pyfloat;
    case B_BOOL:
    case B_MATH_BOOL:
        return kl_pybool;
    case B_COMPLEX:
        return kl_pycomplex;
    case B_CONJ:
        return a;
    case B_BITS:
        if (a->kind != KL_T_FLOAT || a->bits != 64) {
            return fail(S, in->line, "f64_bits() takes a float64, not %s",
                        a->name);
        }
        return kl_pyint;
    case B_FROM_BITS:
        if (a->kind != KL_T_INT || a->bits != 64) {
            return fail(S, in->line, "f64_from_bits() takes an int64, not "
                        "%s", a->name);
        }
        return kl_pyfloat;
    default:
        return internal(S, "builtin without a typing rule", id);
    }
}

static const KlType *
infer_range_test(Infer *S, int32_t id)
{
    const KlInst *in = &S->f->insts[id];
    for (int32_t i = 0; i < in->nargs; i++) {
        const KlType *t = type_of(S, in->args[i]);
        if (t == NULL) {
            return NULL;
        }
        if (!is_intlike(t)) {
            char name[64];
            py_type_name(t, name, sizeof(name));
            return fail(S, in->line, "'%s' object cannot be interpreted as "
                        "an integer", name);
        }
    }
    return kl_bool;
}

/* py_call: resolves the callee for the operand types (see the file
 * comment for when) and stores the module function index in aux. */
static const KlType *
infer_call(Infer *S, int32_t id)
{
    KlInst *in = &S->f->insts[id];
    KlModule *m = S->f->mod;
    if (in->imm.i < 0 || in->imm.i >= S->f->ncallees
        || m->resolve_call == NULL) {
        return internal(S, "call without a callee", id);
    }
    /* argument types, compared with the cache, then kept in it */
    const KlType *local[16] = {0};
    size_t size = sizeof(KlType *) * (size_t)in->nargs;
    const KlType **types = local;
    if (in->nargs > 16 && (types = kl_arena_alloc(&m->arena, size)) == NULL) {
        kl_error(S->d, KL_DIAG_NOMEM, in->line, "out of memory");
        return ERR;
    }
    for (int32_t i = 0; i < in->nargs; i++) {
        if ((types[i] = type_of(S, in->args[i])) == NULL) {
            return NULL;
        }
    }
    CallCache *c = S->calls[id];
    if (c == NULL || memcmp(c->argtypes, types, size) != 0) {
        if (S->resolve_budget <= 0) {
            return NULL;    /* wait until the other types settle */
        }
        S->resolve_budget--;
        S->resolved++;
        if (c == NULL) {
            c = kl_arena_alloc(&m->arena, sizeof(CallCache));
        }
        const KlType **kept = kl_arena_alloc(&m->arena,
                                             size + sizeof(KlType *));
        if (c == NULL || kept == NULL) {
            kl_error(S->d, KL_DIAG_NOMEM, in->line, "out of memory");
            return ERR;
        }
        memcpy(kept, types, size);
        S->calls[id] = c;
        c->argtypes = kept;
        c->err = NULL;
        c->func = m->resolve_call(m, S->f->callees[in->imm.i], kept,
                                  in->nargs, in->line, S->d);
        if (c->func < 0 || c->func >= m->nfuncs) {
            c->func = -1;
            if (S->d->kind == KL_DIAG_NONE) {
                kl_internal_error(S->d, "call resolution failed silently");
            }
            if ((c->err = kl_arena_alloc(&m->arena, sizeof(KlDiag))) == NULL) {
                return ERR;
            }
            *c->err = *S->d;
        }
    }
    if (c->func < 0) {
        if (S->d->kind == KL_DIAG_NONE && c->err != NULL) {
            *S->d = *c->err;
        }
        return ERR;
    }
    in->aux = c->func;
    const KlFunc *callee = m->funcs[c->func];
    if (callee->ret_type == NULL) {
        return fail(S, in->line, "cannot infer the return type of the "
                    "recursive call to %s(); annotate its return type",
                    callee->name);
    }
    return callee->ret_type;
}

/* ret: joins the returned type into S->ret_join, or checks it against the
 * return annotation. */
static const KlType *
infer_ret(Infer *S, int32_t id)
{
    const KlInst *in = &S->f->insts[id];
    const KlType *v = in->nargs > 0 ? type_of(S, in->args[0]) : kl_none;
    if (v == NULL) {
        return NULL;
    }
    if (v->kind == KL_T_ARRAY) {
        return fail(S, in->line, "arrays cannot be returned");
    }
    if (v->kind != KL_T_NONE && !kl_type_is_scalar(v)) {
        return fail(S, in->line, "cannot return a value of type %s",
                    v->name);
    }
    if (S->annotated) {
        const KlType *r = S->f->ret_type;
        if (r->kind == KL_T_ARRAY) {
            return fail(S, in->line, "arrays cannot be returned");
        }
        if ((r->kind == KL_T_NONE) != (v->kind == KL_T_NONE)
            || (is_complex(v) && !is_complex(r))) {
            return fail(S, in->line, "cannot return %s from a function "
                        "annotated to return %s", show(v), show(r));
        }
        return kl_void;
    }
    if (S->ret_join == NULL) {
        S->ret_join = v;
        return kl_void;
    }
    if ((S->ret_join->kind == KL_T_NONE) != (v->kind == KL_T_NONE)) {
        return fail(S, in->line, "function returns both None and %s",
                    v->kind == KL_T_NONE ? S->ret_join->name : v->name);
    }
    S->ret_join = join(S->ret_join, v);
    return S->ret_join ? kl_void : internal(S, "return join failed", id);
}

/* ---- the switch -------------------------------------------------------- */

/* The type of instruction id from its operands' current types: a type,
 * NULL when still unknown, or ERR with S->d filled. */
static const KlType *
infer_inst(Infer *S, int32_t id)
{
    KlInst *in = &S->f->insts[id];
    int fixed = kl_op_nargs(in->op);
    if (fixed >= 0 && in->nargs != fixed) {
        return internal(S, "wrong operand count", id);
    }
    for (int32_t i = 0; i < in->nargs; i++) {
        if (in->args[i] < 0 || in->args[i] >= S->f->ninsts) {
            return internal(S, "operand out of range", id);
        }
    }
    switch (in->op) {
    case KL_OP_const:
        return in->type ? in->type : internal(S, "untyped constant", id);
    case KL_OP_arg:
        if (in->imm.i < 0 || in->imm.i >= S->f->nparams
            || S->f->param_types == NULL
            || S->f->param_types[in->imm.i] == NULL) {
            return internal(S, "argument without a type", id);
        }
        return S->f->param_types[in->imm.i];
    case KL_OP_bparam:
        return infer_bparam(S, id);
    case KL_OP_undef:
        return NULL;    /* typed at the end from what it feeds */
    case KL_OP_py_binop:
        return infer_binop(S, id);
    case KL_OP_py_unop:
        return infer_unop(S, id);
    case KL_OP_py_cmp:
        return infer_cmp(S, id);
    case KL_OP_py_truth:
        return infer_truth(S, id);
    case KL_OP_py_getitem:
        return infer_getitem(S, id);
    case KL_OP_py_setitem:
        return infer_setitem(S, id);
    case KL_OP_py_getattr:
        return infer_getattr(S, id);
    case KL_OP_py_call:
        return infer_call(S, id);
    case KL_OP_py_builtin:
        return infer_builtin(S, id);
    case KL_OP_py_range_test:
        return infer_range_test(S, id);
    case KL_OP_branch: {
        const KlType *c = type_of(S, in->args[0]);
        if (c != NULL && c->kind != KL_T_BOOL) {
            return internal(S, "branch condition is not bool", id);
        }
        return kl_void;
    }
    case KL_OP_ret:
        return infer_ret(S, id);
    case KL_OP_jump:
    case KL_OP_raise:
    case KL_OP_unreachable:
        return kl_void;
    default:
        return internal(S, "primitive op before lower", id);
    }
}

/* ---- driving ----------------------------------------------------------- */

/* Finds the blocks reachable from the entry and the jumps into each;
 * resets the types infer owns (block params, undefs). */
static int
setup(Infer *S)
{
    KlFunc *f = S->f;
    KlArena *a = &f->mod->arena;
    S->reach = kl_arena_alloc(a, (size_t)f->nblocks + 1);
    S->incoming = kl_arena_alloc(a, sizeof(KlVec) * ((size_t)f->nblocks + 1));
    S->calls = kl_arena_alloc(a, sizeof(CallCache *)
                              * ((size_t)f->ninsts + 1));
    int32_t *stack = kl_arena_alloc(a, sizeof(int32_t)
                                    * ((size_t)f->nblocks + 1));
    if (!S->reach || !S->incoming || !S->calls || !stack) {
        return kl_error(S->d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    if (f->nblocks == 0) {
        return kl_internal_error(S->d, "%s: no entry block", f->name);
    }
    int32_t top = 0, succ[2];
    stack[top++] = 0;
    S->reach[0] = 1;
    while (top > 0) {
        int32_t b = stack[--top];
        int n = kl_block_succs(f, b, succ);
        if (n < 0) {
            return kl_internal_error(S->d, "%s: b%d has a bad terminator",
                                     f->name, b);
        }
        for (int i = 0; i < n; i++) {
            if (!S->reach[succ[i]]) {
                S->reach[succ[i]] = 1;
                stack[top++] = succ[i];
            }
        }
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        int32_t t = S->reach[b] ? kl_block_term(f, b) : -1;
        if (t >= 0 && f->insts[t].op == KL_OP_jump) {
            const KlInst *jmp = &f->insts[t];
            int32_t target = (int32_t)jmp->imm.i;
            if (jmp->nargs != f->blocks[target].nparams) {
                return kl_internal_error(S->d, "%s: jump arity mismatch",
                                         f->name);
            }
            if (kl_vec_push(a, &S->incoming[target], t) < 0) {
                return kl_error(S->d, KL_DIAG_NOMEM, 0, "out of memory");
            }
        }
        const KlVec *v = &f->blocks[b].insts;
        for (int32_t p = 0; p < v->len; p++) {
            KlInst *in = &f->insts[v->items[p]];
            if (in->op == KL_OP_bparam || in->op == KL_OP_undef) {
                in->type = NULL;
            }
        }
    }
    return 0;
}

/* One sweep over all blocks in order.  Quiet sweeps (S->report == 0)
 * swallow errors, leaving the value unknown; the reporting sweep returns
 * -1 at the first error in a reachable block. */
static int
sweep(Infer *S)
{
    KlFunc *f = S->f;
    KlDiag *user = S->d;
    S->ret_join = NULL;
    S->resolved = 0;
    for (int32_t b = 0; b < f->nblocks; b++) {
        int loud = S->report && S->reach[b];
        const KlVec *v = &f->blocks[b].insts;
        for (int32_t p = 0; p < v->len; p++) {
            int32_t id = v->items[p];
            KlInst *in = &f->insts[id];
            if (!loud) {
                memset(&S->scratch, 0, sizeof(S->scratch));
                S->d = &S->scratch;
            }
            if (!S->reach[b] && (in->op == KL_OP_ret
                                 || in->op == KL_OP_py_call)) {
                /* dead code: no return type, no callee compiled */
                S->d = user;
                continue;
            }
            const KlType *t = infer_inst(S, id);
            S->d = user;
            if (t == ERR) {
                if (loud) {
                    return -1;
                }
                t = NULL;
            }
            if (t != in->type) {
                in->type = t;
                S->changed = 1;
            }
        }
    }
    return 0;
}

/* Quiet sweeps until nothing changes; between settled states, one more
 * call is resolved. */
static int
settle(Infer *S)
{
    for (int round = 0; round < MAX_ROUNDS; round++) {
        S->changed = 0;
        S->resolve_budget = 0;
        sweep(S);
        if (S->changed) {
            continue;
        }
        S->resolve_budget = 1;
        sweep(S);
        S->resolve_budget = 0;
        if (!S->changed && S->resolved == 0) {
            return 0;
        }
    }
    return kl_internal_error(S->d, "%s: type inference did not converge",
                             S->f->name);
}

/* Gives block params that received nothing but undef (variables never
 * assigned on any path here) the Python int type; returns how many. */
static int
default_params(Infer *S)
{
    int n = 0;
    for (int32_t b = 0; b < S->f->nblocks; b++) {
        const KlBlock *blk = &S->f->blocks[b];
        for (int32_t p = 0; p < blk->nparams; p++) {
            KlInst *in = &S->f->insts[blk->insts.items[p]];
            if (in->type == NULL) {
                in->type = kl_pyint;
                n++;
            }
        }
    }
    return n;
}

/* Types each undef like the first param it is jumped to, else as a Python
 * int; gives what stays untyped in unreachable blocks a placeholder type;
 * and checks that nothing reachable stays untyped. */
static int
finish(Infer *S)
{
    KlFunc *f = S->f;
    for (int32_t b = 0; b < f->nblocks; b++) {
        const KlVec *inc = &S->incoming[b];
        for (int32_t j = 0; j < inc->len; j++) {
            const KlInst *jmp = &f->insts[inc->items[j]];
            for (int32_t k = 0; k < jmp->nargs; k++) {
                KlInst *src = &f->insts[jmp->args[k]];
                if (src->op == KL_OP_undef && src->type == NULL) {
                    src->type = f->insts[f->blocks[b].insts.items[k]].type;
                }
            }
        }
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        const KlVec *v = &f->blocks[b].insts;
        for (int32_t p = 0; p < v->len; p++) {
            KlInst *in = &f->insts[v->items[p]];
            if (in->type != NULL) {
                continue;
            }
            if (in->op == KL_OP_undef) {
                in->type = kl_pyint;
            }
            else if (!S->reach[b]) {
                in->type = (kl_op_flags(in->op) & KL_TERM)
                           || in->op == KL_OP_py_setitem ? kl_void : kl_pyint;
            }
            else {
                return kl_internal_error(S->d, "%s: %%%d (%s) left untyped",
                                         f->name, v->items[p],
                                         kl_op_name(in->op));
            }
        }
    }
    return 0;
}

/* ---- float64 math on the Vulkan target --------------------------------- */

_Static_assert(KL_MATH__COUNT <= 64, "math function sets are 64-bit masks");

/* Adds to *need the libm functions that passes/lower_builtins.c will call
 * on float64 for instruction in (a math builtin or a float / complex
 * power). */
static void
math_needed(const KlInst *in, uint64_t *need)
{
    if (in->op == KL_OP_py_builtin && in->aux >= 0 && in->aux < KL_BI__COUNT
        && builtin_rules[in->aux].rule == B_MATH) {
        int fn = kl_builtin_math((KlBuiltin)in->aux);
        if (fn >= 0) {
            *need |= (uint64_t)1 << fn;
        }
    }
    else if (in->op == KL_OP_py_binop && in->aux == KL_BIN_POW
             && in->type != NULL) {
        if (in->type->kind == KL_T_FLOAT && in->type->bits == 64) {
            *need |= (uint64_t)1 << KL_MATH_pow;
        }
        else if (in->type->kind == KL_T_COMPLEX && in->type->bits == 128) {
            /* complex powers: CPython's polar form (lower_builtins.c) */
            static const KlMathFn cpow[] = {KL_MATH_pow, KL_MATH_atan2,
                                            KL_MATH_exp, KL_MATH_log,
                                            KL_MATH_cos, KL_MATH_sin};
            for (size_t i = 0; i < sizeof(cpow) / sizeof(cpow[0]); i++) {
                *need |= (uint64_t)1 << cpow[i];
            }
        }
    }
}

/* Vulkan target: GLSL.std.450 has no float64 transcendental functions, so
 * the SPIR-V backend implements each float64 `math` op lower will emit by
 * calling kiln's own implementation (python/kiln/_devmath.py).  Compiles
 * those the reachable code of f needs into the module (m->devmath). */
static int
resolve_devmath(Infer *S)
{
    KlFunc *f = S->f;
    KlModule *m = f->mod;
    if (m->options.target != 1 || m->resolve_call == NULL) {
        return 0;
    }
    for (int32_t b = 0; b < f->nblocks; b++) {
        const KlVec *v = &f->blocks[b].insts;
        for (int32_t p = 0; S->reach[b] && p < v->len; p++) {
            const KlInst *in = &f->insts[v->items[p]];
            uint64_t need = 0;
            math_needed(in, &need);
            for (int fn = 0; fn < KL_MATH__COUNT; fn++) {
                if (!(need >> fn & 1) || m->devmath_src[fn] == NULL
                    || m->devmath[fn] >= 0) {
                    continue;
                }
                const KlType **types = kl_arena_alloc(&m->arena,
                                                      2 * sizeof(KlType *));
                if (types == NULL) {
                    return kl_error(S->d, KL_DIAG_NOMEM, in->line,
                                    "out of memory");
                }
                types[0] = types[1] = kl_pyfloat;
                int32_t k = m->resolve_call(m, m->devmath_src[fn], types,
                                            kl_math_nargs(fn), in->line,
                                            S->d);
                if (k < 0) {
                    return -1;
                }
                m->devmath[fn] = k;
            }
        }
    }
    return 0;
}

int
kl_infer(KlFunc *f, KlDiag *d)
{
    Infer S;
    memset(&S, 0, sizeof(S));
    S.f = f;
    S.d = d;
    S.annotated = f->ret_type != NULL;
    if (setup(&S) < 0) {
        return -1;
    }
    /* Second phase only when some params were defaulted after the first:
     * the first reports real errors before defaults can cause others. */
    for (int phase = 0; phase < 2; phase++) {
        if (settle(&S) < 0) {
            return -1;
        }
        S.report = 1;
        S.resolve_budget = 1 << 30;
        int rc = sweep(&S);
        S.report = 0;
        if (rc < 0) {
            return -1;
        }
        if (default_params(&S) == 0) {
            break;
        }
    }
    if (!S.annotated) {
        f->ret_type = S.ret_join ? S.ret_join : kl_none;
    }
    if (finish(&S) < 0) {
        return -1;
    }
    return resolve_devmath(&S);
}
