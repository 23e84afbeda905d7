/* ir.h: kiln's intermediate representation, the only contract between the
 * frontend and the backends.
 *
 * A module holds functions; a function holds blocks and instructions in
 * two tables, referred to by int32 index (never by pointer).  Every
 * instruction is a value (its index is its value id); those without a
 * result have type void.  SSA with block parameters: a block's parameters
 * are its first `bparam` instructions, and each `jump` passes one operand
 * per parameter.  `branch` targets take no parameters.  Block 0 is the
 * entry; its first instructions are the `arg`s.
 *
 * Two levels share the IR: Python-level ops from the frontend (flag
 * KL_PYLEVEL) are typed by passes/infer.c and replaced by primitive ops in
 * passes/lower.c; backends see primitive ops only.  Opcodes: ir/ops.h.
 *
 * All IR memory belongs to the module's arena.
 */
#ifndef KILN_IR_H
#define KILN_IR_H

#include "../kiln.h"
#include "../types.h"

/* ---- opcodes --------------------------------------------------------- */

enum {
    KL_PURE = 1,     /* no side effects */
    KL_COMM = 2,     /* commutative */
    KL_TERM = 4,     /* terminator */
    KL_PYLEVEL = 8,  /* Python-level: before lower only */
};

typedef enum KlOp {
#define KL_OP(name, nargs, flags, doc) KL_OP_##name,
#include "ops.h"
#undef KL_OP
    KL_OP__COUNT
} KlOp;

const char *kl_op_name(KlOp op);
int kl_op_nargs(KlOp op);           /* -1: variable */
int kl_op_flags(KlOp op);

/* py_binop aux: the operator, inplace forms included. */
typedef enum KlBinop {
    KL_BIN_ADD, KL_BIN_SUB, KL_BIN_MUL, KL_BIN_TRUEDIV, KL_BIN_FLOORDIV,
    KL_BIN_MOD, KL_BIN_POW, KL_BIN_LSHIFT, KL_BIN_RSHIFT, KL_BIN_AND,
    KL_BIN_OR, KL_BIN_XOR,
} KlBinop;

/* py_unop aux. */
typedef enum KlUnop { KL_UN_NEG, KL_UN_POS, KL_UN_NOT, KL_UN_INVERT } KlUnop;

/* py_cmp and cmp aux. */
typedef enum KlCmp {
    KL_CMP_LT, KL_CMP_LE, KL_CMP_EQ, KL_CMP_NE, KL_CMP_GT, KL_CMP_GE
} KlCmp;

/* py_getattr aux. */
typedef enum KlAttr {
    KL_ATTR_SHAPE, KL_ATTR_SIZE, KL_ATTR_NDIM, KL_ATTR_REAL, KL_ATTR_IMAG
} KlAttr;

/* libm functions reachable from kernels: X(name, nargs).  Each is the C
 * function of that name on double (and its `f`-suffixed twin on float). */
#define KL_MATHFNS(X)                                                     \
    X(sqrt, 1) X(sin, 1) X(cos, 1) X(tan, 1) X(asin, 1) X(acos, 1)        \
    X(atan, 1) X(atan2, 2) X(sinh, 1) X(cosh, 1) X(tanh, 1) X(asinh, 1)   \
    X(acosh, 1) X(atanh, 1) X(exp, 1) X(exp2, 1) X(expm1, 1) X(log, 1)    \
    X(log2, 1) X(log10, 1) X(log1p, 1) X(pow, 2) X(fabs, 1) X(hypot, 2)   \
    X(copysign, 2) X(fmod, 2) X(erf, 1) X(erfc, 1) X(tgamma, 1)           \
    X(lgamma, 1) X(floor, 1) X(ceil, 1) X(trunc, 1) X(rint, 1)

typedef enum KlMathFn {
#define KL_X(name, nargs) KL_MATH_##name,
    KL_MATHFNS(KL_X)
#undef KL_X
    KL_MATH__COUNT
} KlMathFn;

const char *kl_math_name(KlMathFn fn);
int kl_math_nargs(KlMathFn fn);

/* py_builtin aux: builtins, methods and math-module functions a kernel may
 * call.  X(name, python_name) where python_name is how the frontend finds
 * it ("math.sqrt" for module functions, ".conjugate" for methods). */
#define KL_BUILTINS(X)                                                    \
    X(abs, "abs") X(min, "min") X(max, "max") X(len, "len")               \
    X(int, "int") X(float, "float") X(bool, "bool")                       \
    X(complex, "complex") X(round, "round")                               \
    X(conjugate, ".conjugate")                                            \
    X(sqrt, "math.sqrt") X(sin, "math.sin") X(cos, "math.cos")            \
    X(tan, "math.tan") X(asin, "math.asin") X(acos, "math.acos")          \
    X(atan, "math.atan") X(atan2, "math.atan2") X(sinh, "math.sinh")      \
    X(cosh, "math.cosh") X(tanh, "math.tanh") X(asinh, "math.asinh")      \
    X(acosh, "math.acosh") X(atanh, "math.atanh") X(exp, "math.exp")      \
    X(exp2, "math.exp2") X(expm1, "math.expm1") X(log, "math.log")        \
    X(log2, "math.log2") X(log10, "math.log10") X(log1p, "math.log1p")    \
    X(pow, "math.pow") X(fabs, "math.fabs") X(hypot, "math.hypot")        \
    X(copysign, "math.copysign") X(fmod, "math.fmod") X(erf, "math.erf")  \
    X(erfc, "math.erfc") X(gamma, "math.gamma") X(lgamma, "math.lgamma")  \
    X(floor, "math.floor") X(ceil, "math.ceil") X(trunc, "math.trunc")    \
    X(isnan, "math.isnan") X(isinf, "math.isinf")                         \
    X(isfinite, "math.isfinite") X(degrees, "math.degrees")               \
    X(radians, "math.radians")                                            \
    /* NumPy scalar constructors (np.float32(x)), by type name */         \
    X(np_bool, "numpy.bool") X(np_int8, "numpy.int8")                     \
    X(np_int16, "numpy.int16") X(np_int32, "numpy.int32")                 \
    X(np_int64, "numpy.int64") X(np_uint8, "numpy.uint8")                 \
    X(np_uint16, "numpy.uint16") X(np_uint32, "numpy.uint32")             \
    X(np_uint64, "numpy.uint64") X(np_float32, "numpy.float32")           \
    X(np_float64, "numpy.float64") X(np_complex64, "numpy.complex64")     \
    X(np_complex128, "numpy.complex128")                                  \
    /* the last two are private to kiln's own float64 math, in         \
       python/kiln/_devmath.py: the int64 bits of a float64 and back     \
       (op `bitcast`) */                                                  \
    X(f64_bits, "kiln._devmath.f64_bits")                                 \
    X(f64_from_bits, "kiln._devmath.f64_from_bits")

typedef enum KlBuiltin {
#define KL_X(name, pyname) KL_BI_##name,
    KL_BUILTINS(KL_X)
#undef KL_X
    KL_BI__COUNT
} KlBuiltin;

/* Python name of a builtin ("math.sqrt"); lookup by that name, -1 if none. */
const char *kl_builtin_pyname(KlBuiltin b);
int kl_builtin_lookup(const char *pyname);
/* The libm function (KlMathFn) a math-module builtin computes (math.gamma:
 * tgamma), or -1 for other builtins. */
int kl_builtin_math(KlBuiltin b);

/* ---- exceptions raised by compiled code ------------------------------ */

typedef enum KlExcKind {
    KL_EXC_INDEX,       /* IndexError */
    KL_EXC_ZERODIV,     /* ZeroDivisionError */
    KL_EXC_VALUE,       /* ValueError */
    KL_EXC_OVERFLOW,    /* OverflowError */
    KL_EXC_ASSERTION,   /* AssertionError */
    KL_EXC_USER,        /* user `raise Cls("msg")`: exc_class is Cls */
} KlExcKind;

/* One place that can raise.  msg is a printf format whose only
 * conversions are %lld, filled from the raise's int64 payload. */
typedef struct KlRaiseSite {
    KlExcKind kind;     /* which exception */
    int line;           /* Python source line */
    void *exc_class;    /* KL_EXC_USER: the exception class (PyObject *) */
    const char *msg;    /* message format; "" for none */
} KlRaiseSite;

/* ---- instructions, blocks, loops, functions ------------------------- */

typedef struct KlInst {
    KlOp op;                /* opcode */
    int32_t aux;            /* sub-opcode (KlBinop, KlCmp, KlBuiltin, ...)
                               or branch's false target */
    int32_t line;           /* Python source line */
    int32_t block;          /* block holding it */
    int32_t nargs;          /* operand count */
    int32_t *args;          /* operand value ids */
    const KlType *type;     /* result type; NULL until infer for py ops */
    union {
        int64_t i;          /* int/bool constant, index, target block */
        double f;           /* float constant */
        struct {
            double re, im;
        } c;                /* complex constant */
    } imm;
} KlInst;

typedef struct KlBlock {
    KlVec insts;            /* instruction ids in order; params first */
    int32_t nparams;        /* leading bparam instructions */
    int32_t loop;           /* innermost loop containing it, -1 if none */
    uint8_t cold;           /* entered only when a check failed: defer's
                               re-run of a loop (a block ending in `raise`
                               is cold without the mark) */
} KlBlock;

/* A source loop, kept from the frontend to the backends. */
typedef struct KlLoop {
    int32_t header;         /* block testing whether to run the body */
    int32_t body;           /* first block of the body */
    int32_t exit;           /* block reached when the test fails */
    int32_t parent;         /* enclosing loop, -1 if outermost */
    uint8_t parallel;       /* written as prange */
    uint8_t checked;        /* pfor body: the copy of the chunk loop that
                               runs when the fast copy's guard fails */
} KlLoop;

typedef struct KlModule KlModule;

/* How the partials of a prange reduction combine (KlFunc.param_reduce):
 * + (also for `-=`, whose partials are sums of negated terms), *, min and
 * max as Python's min(a, b) / max(a, b) (b < a ? b : a), & | ^. */
typedef enum KlReduceOp {
    KL_RED_NONE = 0, KL_RED_ADD, KL_RED_MUL, KL_RED_MIN, KL_RED_MAX,
    KL_RED_AND, KL_RED_OR, KL_RED_XOR
} KlReduceOp;

typedef struct KlFunc {
    KlModule *mod;          /* owner */
    const char *name;       /* Python qualified name */
    const char *filename;   /* source file, for diagnostics */
    int firstline;          /* line of the `def` */
    int32_t nparams;        /* Python parameters */
    const char **param_names;   /* their names */
    const KlType **param_types; /* their types at this specialisation */
    uint8_t *param_reduce;  /* pfor body (passes/parallel.c): per param,
                               the KlReduceOp of a reduction's partials
                               array, KL_RED_NONE for other params; NULL
                               in other functions */
    const KlType *ret_type;     /* annotation, or NULL until infer */
    KlInst *insts;          /* instruction table */
    int32_t ninsts, cap_insts;
    KlBlock *blocks;        /* block table; 0 is the entry */
    int32_t nblocks, cap_blocks;
    KlLoop *loops;          /* loop table */
    int32_t nloops, cap_loops;
    void **callees;         /* py_call targets (borrowed PyObject *) */
    int32_t ncallees;
} KlFunc;

typedef struct KlOptions {
    uint8_t fastmath;       /* allow reassociation / contraction */
    uint8_t boundscheck;    /* check array indices */
    uint8_t noalias;        /* the entry's array arguments share no memory
                               (checked by the dispatcher at each call) */
    uint8_t stream;         /* noalias, and large arrays written only: CPU
                               loops write them with streaming stores
                               (passes/stream.c) */
    uint8_t target;         /* 0: CPU; 1: Vulkan (serial code as one SPIR-V
                               invocation per step, passes/steps.h; each
                               `pfor` one GPU dispatch with GPU-sized
                               chunks) */
} KlOptions;

/* Resolves a call during infer: compiles (or finds) the specialisation of
 * Python function `callee` for `argtypes` and returns its index in
 * mod->funcs, or -1 with d filled. */
typedef int32_t (*KlResolveCall)(KlModule *mod, void *callee,
                                 const KlType **argtypes, int32_t nargs,
                                 int line, KlDiag *d);

struct KlModule {
    KlArena arena;          /* owns all IR memory */
    KlOptions options;
    KlFunc **funcs;         /* funcs[0] is the entry point */
    int32_t nfuncs, cap_funcs;
    KlRaiseSite *raises;    /* raise table shared by all functions */
    int32_t nraises, cap_raises;
    KlResolveCall resolve_call; /* set by the driver */
    void *resolve_ctx;      /* driver state for resolve_call */
    void *devmath_src[KL_MATH__COUNT]; /* Vulkan target: per math function
                                   with no float64 device instruction, its
                                   implementation in python/kiln/_devmath.py
                                   (a PyObject * reference the module owns,
                                   dropped by `release`; frontend), or NULL */
    uint8_t devmath_loaded;     /* the frontend tried to import them */
    const char *devmath_error;  /* why the import failed (arena), or NULL */
    void (*release)(KlModule *m);   /* set by the frontend when the module
                                   holds Python references: drops them;
                                   kl_module_free calls it (with the GIL) */
    int32_t devmath[KL_MATH__COUNT]; /* the module function of that
                                   implementation (float64 arguments) once
                                   infer resolved it, else -1; the SPIR-V
                                   backend calls it for float64 `math` */
};

/* ---- building ------------------------------------------------------- */

/* Fresh module with its arena; NULL when out of memory. */
KlModule *kl_module_new(KlOptions options);
void kl_module_free(KlModule *m);
/* Adds a function with one empty entry block; NULL when out of memory. */
KlFunc *kl_func_new(KlModule *m, const char *name);
/* Adds a raise site; returns its index or -1 (out of memory). */
int32_t kl_raise_site(KlModule *m, KlExcKind kind, int line,
                      void *exc_class, const char *msg);

/* Adds an empty block; returns its id or -1. */
int32_t kl_block_new(KlFunc *f);
/* Appends an instruction to block b; returns its id or -1 (out of
 * memory).  args is copied. */
int32_t kl_emit(KlFunc *f, int32_t b, KlOp op, const KlType *type,
                int line, int32_t nargs, const int32_t *args);
/* Adds a block parameter after the existing ones (moving nothing else). */
int32_t kl_bparam_add(KlFunc *f, int32_t b, const KlType *type);
/* Adds a loop; returns its id or -1. */
int32_t kl_loop_new(KlFunc *f, int32_t header, int32_t body, int32_t exit,
                    int32_t parent, int parallel);

/* Shorthands over kl_emit. */
int32_t kl_const_int(KlFunc *f, int32_t b, const KlType *t, int64_t v,
                     int line);
int32_t kl_const_float(KlFunc *f, int32_t b, const KlType *t, double v,
                       int line);
int32_t kl_jump(KlFunc *f, int32_t b, int32_t target, int32_t nargs,
                const int32_t *args, int line);
int32_t kl_branch(KlFunc *f, int32_t b, int32_t cond, int32_t if_true,
                  int32_t if_false, int line);

/* The block's terminator, or -1 when it has none yet. */
int32_t kl_block_term(const KlFunc *f, int32_t b);
/* Takes block b's terminator out of its instruction list and returns it
 * (its id), so that a pass can append before it and end the block again
 * (kl_vec_push, or a new terminator). */
int32_t kl_block_reopen(KlFunc *f, int32_t b);
/* The blocks block b's terminator goes to, into out[0..2): their number,
 * or -1 when b has no terminator or a target is out of range. */
int kl_block_succs(const KlFunc *f, int32_t b, int32_t out[2]);

/* ---- loops and arrays (analyses shared by passes and backends) ------ */

/* Whether loop `inner` lies in loop `outer` or is it (-1 lies in none). */
int kl_loop_within(const KlFunc *f, int32_t inner, int32_t outer);
/* For loop `loop` with no inner loop: the one jump from outside into its
 * header, or -1 when it has another entry, or an exit other than its
 * header's test to its exit block (a break). */
int32_t kl_loop_entry(const KlFunc *f, int32_t loop);
/* Copies the blocks of `loop` (which has no inner loop) into a new loop
 * with the same parent, remapping operands, targets and block params;
 * its exits go to block exit_to.  bmap (f->nblocks entries) and vmap
 * (f->ninsts), filled with -1 by the caller, receive old -> new blocks
 * and values.  The new loop's id, or -1 when out of memory. */
int32_t kl_loop_copy(KlFunc *f, int32_t loop, int32_t exit_to,
                     int32_t *bmap, int32_t *vmap);

/* Which entry array an array value holds: an entry parameter k >= 0 of
 * m->funcs[0] passed down (every call and pfor reaching a parameter passes
 * that same array), or one of these. */
enum {
    KL_ARRAY_UNSET = -1,    /* a parameter nothing passes anything to */
    KL_ARRAY_UNKNOWN = -2,  /* any array, maybe an entry parameter */
    KL_ARRAY_SCRATCH = -3   /* a scratch array of the function itself */
};
/* Per function of m, per parameter: the entry array it holds (KL_ARRAY_*
 * when none).  malloc'ed, NULL when out of memory. */
int32_t **kl_array_params(const KlModule *m);
void kl_array_params_free(const KlModule *m, int32_t **map);
/* The entry array value v of function fi holds, given that map. */
int32_t kl_array_of(const KlModule *m, int32_t *const *map, int32_t fi,
                    int32_t v);

/* ---- checking and printing ------------------------------------------ */

/* Checks structural invariants (every block ends in one terminator, jump
 * arity matches block params, operand ids in range and defined before use
 * in their block, types present after infer, no Python-level op when
 * `primitive`).  0 or -1 with an internal error in d. */
int kl_verify(const KlFunc *f, int primitive, KlDiag *d);

/* Stable text form of a function / module (see docs/ir.md); malloc'ed,
 * caller frees; NULL when out of memory. */
char *kl_func_print(const KlFunc *f);
char *kl_module_print(const KlModule *m);

#endif /* KILN_IR_H */
