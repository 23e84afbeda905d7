/* passes/lower.h: state and emission helpers shared by passes/lower.c (the
 * driver and the operators) and passes/lower_builtins.c (builtins, math,
 * powers and complex arithmetic).  Private to the lower pass.
 *
 * Error convention inside the pass: every helper returns a new value id, or
 * -1 after recording a diagnostic; helpers given a -1 operand return -1 at
 * once, so straight-line emission code checks only its final result.
 */
#ifndef KILN_PASSES_LOWER_H
#define KILN_PASSES_LOWER_H

#include "../compile.h"

/* The state of one kl_lower run.  New instructions and blocks are built in
 * f's (fresh) tables while the Python-level ones stay readable in oi/ob. */
typedef struct Lower {
    KlFunc *f;              /* function being rewritten */
    KlDiag *d;              /* where errors go */
    const KlInst *oi;       /* old (Python-level) instruction table */
    int32_t on;             /* its length */
    const KlBlock *ob;      /* old block table */
    int32_t onb;            /* its length */
    int32_t *vmap;          /* old value -> new value; -1: none/unset */
    int32_t **shp;          /* old shape-tuple value -> its ndim items */
    int32_t cur;            /* new block receiving instructions */
    int32_t loop;           /* loop of the blocks being emitted */
    int line;               /* source line of the instruction lowered */
} Lower;

/* ---- emission (lower.c) ---------------------------------------------- */

const KlType *kl_lw_type(Lower *L, int32_t v);     /* type of new value v */
int32_t kl_lw_emit(Lower *L, KlOp op, const KlType *t, int32_t n,
                   const int32_t *args);
int32_t kl_lw_e1(Lower *L, KlOp op, const KlType *t, int32_t a);
int32_t kl_lw_e2(Lower *L, KlOp op, const KlType *t, int32_t a, int32_t b);
int32_t kl_lw_ci(Lower *L, const KlType *t, int64_t v);    /* int/bool */
int32_t kl_lw_cf(Lower *L, const KlType *t, double v);     /* float */
/* Arithmetic on two values of one type (result: that type). */
int32_t kl_lw_bin(Lower *L, KlOp op, int32_t a, int32_t b);
/* Compare two values of one scalar type (bools ordered as 0 < 1). */
int32_t kl_lw_cmp(Lower *L, KlCmp c, int32_t a, int32_t b);
int32_t kl_lw_sel(Lower *L, int32_t c, int32_t a, int32_t b);
int32_t kl_lw_and(Lower *L, int32_t a, int32_t b);         /* bools */
int32_t kl_lw_or(Lower *L, int32_t a, int32_t b);          /* bools */
int32_t kl_lw_not(Lower *L, int32_t a);                    /* bool */
int32_t kl_lw_math1(Lower *L, KlMathFn fn, int32_t a);
int32_t kl_lw_math2(Lower *L, KlMathFn fn, int32_t a, int32_t b);
/* Real parts of complex values, and complex from parts. */
int32_t kl_lw_re(Lower *L, int32_t z);
int32_t kl_lw_im(Lower *L, int32_t z);
int32_t kl_lw_cmake(Lower *L, const KlType *ct, int32_t re, int32_t im);
/* Float predicates: x is NaN, x is +-inf, x is finite. */
int32_t kl_lw_isnan(Lower *L, int32_t x);
int32_t kl_lw_isinf(Lower *L, int32_t x);
int32_t kl_lw_isfinite(Lower *L, int32_t x);

/* Truth value of a scalar (bool result). */
int32_t kl_lw_truth(Lower *L, int32_t v);
/* Converts scalar v to (the strong form of) type `to` as NumPy casts do;
 * float -> int checks NaN / inf / range first (int() errors). */
int32_t kl_lw_conv(Lower *L, int32_t v, const KlType *to);
/* Python int (int64) i as integer type s, raising NumPy's OverflowError
 * when s cannot hold it ("Python integer 300 out of bounds for int8"). */
int32_t kl_lw_pyint_to_int(Lower *L, int32_t i, const KlType *s);
/* float -> int with CPython's int() checks (NaN: ValueError, inf and out of
 * int64 range: OverflowError). */
int32_t kl_lw_f2i(Lower *L, int32_t x, const KlType *to);
/* Known integer / float value of a new constant; 1 if v is one. */
int kl_lw_const_int(Lower *L, int32_t v, int64_t *out);

/* ---- control flow (lower.c) ------------------------------------------ */

/* A fresh block in the current loop. */
int32_t kl_lw_block(Lower *L);
/* Ends the current block with `raise` of a (kind, message) site at the
 * current line with n int64 payload values. */
int kl_lw_raise(Lower *L, KlExcKind kind, const char *msg, int n,
                const int32_t *payload);
/* Splits at bool `ok`: continues in a new block when it holds; otherwise
 * control goes to the block returned in *bad (current block unchanged
 * afterwards: the new ok block).  -1 on failure. */
int kl_lw_guard(Lower *L, int32_t ok, int32_t *bad);
/* kl_lw_guard plus a raise of (kind, msg, payload) in the bad block. */
int kl_lw_check(Lower *L, int32_t ok, KlExcKind kind, const char *msg,
                int n, const int32_t *payload);
/* kl_lw_check without payload, for a check guarding float arithmetic only
 * (code after it is well defined when it fails): the raise is marked
 * deferrable (aux 1) for passes/defer.c. */
int kl_lw_float_check(Lower *L, int32_t ok, KlExcKind kind,
                      const char *msg);

/* ---- lower_builtins.c ----------------------------------------------- */

/* old: index of a py_builtin instruction; sets L->vmap[old]. */
int kl_lw_builtin(Lower *L, int32_t old);
/* Powers: a ** b with both already converted to the strong form of R;
 * bconst: the old exponent instruction (for constant exponents) or -1. */
int32_t kl_lw_ipow(Lower *L, int32_t a, int32_t b);
int32_t kl_lw_fpow(Lower *L, int32_t a, int32_t b, int weak);
int32_t kl_lw_cpow(Lower *L, int32_t a, int32_t b, int weak,
                   const KlInst *bconst);
/* Complex product and quotient (CPython's for weak, NumPy's for strong). */
int32_t kl_lw_cmul(Lower *L, int32_t a, int32_t b);
int32_t kl_lw_cdiv(Lower *L, int32_t a, int32_t b, int weak,
                   const char *zero_msg);

#endif /* KILN_PASSES_LOWER_H */
