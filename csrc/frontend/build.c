/* build.c: the frontend, from a CPython function to kiln's Python-level IR
 * (kl_build_ir, compile.h).
 *
 * The decoded bytecode (decode.h) is split into basic blocks; each block is
 * interpreted abstractly with a symbolic state (locals and operand stack)
 * whose slots hold Items: SSA values or compile-time objects such as
 * modules, builtins, range() calls, tuples and exception classes.  Blocks
 * are visited in code order; a block whose predecessors are all done gets
 * one parameter per slot that differs between incoming edges (dead locals
 * excluded), a loop header gets one per value slot and the trivial ones
 * are pruned afterwards.  Conditional edges go through trampoline blocks,
 * which also carry the counter update of `for` loops; empty trampolines
 * and straight-line block chains are folded away at the end and the
 * function's tables are compacted.
 *
 * Everything outside kiln's language is a CompileError naming the
 * construct.  Requires the GIL.
 */
#include "decode.h"

#include <opcode.h>
#include <string.h>

#include "../compile.h"

/* What a slot of the abstract state holds. */
typedef enum ItemKind {
    IT_UNDEF,       /* local not assigned (or dead) */
    IT_CONFLICT,    /* local holding different kinds of objects by path */
    IT_VAL,         /* SSA value v[0] */
    IT_NULL,        /* the NULL of the 3.11 calling sequence */
    IT_NONE,        /* the constant None */
    IT_STR,         /* a constant string obj (raise messages only) */
    IT_MODULE,      /* module obj */
    IT_BUILTIN,     /* builtin or math function number n (KlBuiltin) */
    IT_METHOD,      /* bound builtin method n; `self` is the next slot */
    IT_RANGEFN,     /* range (n = 0) or kiln.prange (n = 1) */
    IT_RANGE,       /* range call: start v[0], stop v[1], step v[2] */
    IT_ITER,        /* range iterator: counter v[0], stop v[1], step v[2] */
    IT_FUNC,        /* Python function obj, callee number n */
    IT_EXCCLS,      /* exception class obj */
    IT_EXC,         /* exception instance: class obj (NULL: assertion), s */
    IT_ASSERT,      /* AssertionError from LOAD_ASSERTION_ERROR */
    IT_TUPLE,       /* compile-time tuple of n elems */
    IT_OBJECT,      /* any other object obj, called s */
} ItemKind;

typedef struct Item Item;
struct Item {
    ItemKind kind;      /* what it is */
    int32_t n;          /* see ItemKind */
    int32_t v[3];       /* SSA values, see ItemKind */
    PyObject *obj;      /* borrowed object, see ItemKind */
    const char *s;      /* message or name, see ItemKind */
    Item *elems;        /* IT_TUPLE elements (arena, never mutated) */
};

/* The abstract state at one point: locals then the operand stack. */
typedef struct State {
    Item *slots;        /* nlocals locals followed by stacksize stack slots */
    int32_t depth;      /* items on the stack */
} State;

/* An edge waiting for its target block to be entered. */
typedef struct Edge Edge;
struct Edge {
    Edge *next;         /* next pending edge of the same target */
    int32_t from;       /* IR block, not yet terminated, that will jump */
    int line;           /* line of the jump */
    State st;           /* state on the edge */
};

/* One parameter of a block: component comp of state slot slot. */
typedef struct PSlot {
    int32_t slot;
    int32_t comp;
} PSlot;

/* A basic block of the bytecode. */
typedef struct BcBlock {
    int32_t first, last;    /* instruction range, inclusive */
    int32_t succ[2];        /* successor blocks, -1 if none */
    KlVec preds;            /* predecessor blocks (with repeats) */
    uint8_t reachable;      /* reachable from the entry */
    uint8_t done;           /* entered and interpreted */
    uint8_t *live;          /* locals live on entry */
    int32_t range;          /* innermost loop range holding it, -1 */
    int32_t ir;             /* its IR block once entered */
    Edge *pending;          /* edges waiting for it */
    State entry;            /* entry state: the template for back edges */
    PSlot *params;          /* what each block parameter carries */
    int32_t nparams;
} BcBlock;

/* A loop found in the bytecode: instructions [first, last]. */
typedef struct Range {
    int32_t first, last;    /* instruction range, inclusive */
    int32_t header;         /* header bytecode block */
    int32_t parent;         /* enclosing range, -1 */
    uint8_t is_for;         /* FOR_ITER loop (else while loop) */
    uint8_t parallel;       /* prange */
    int32_t body, exit;     /* IR blocks (for loops, set at FOR_ITER) */
    int32_t exit_bc;        /* while loops: block after the latch, -1 */
    int32_t loop;           /* KlLoop id, -1 */
} Range;

typedef struct Builder {
    KlModule *m;
    KlFunc *f;
    KlDiag *d;
    KlArena *a;
    PyObject *func;         /* the Python function */
    PyObject *code;         /* its code object (borrowed) */
    PyObject *globals;      /* borrowed */
    PyObject *builtins;     /* borrowed */
    PyObject *consts;       /* co_consts (borrowed) */
    PyObject *names;        /* co_names (new reference) */
    PyObject *varnames;     /* co_varnames (new reference) */
    PyObject *prange;       /* kiln.prange if kiln is imported (borrowed) */
    KlBytecode bc;
    int32_t nlocals, stacksize, nslots;
    BcBlock *blocks;
    int32_t nblocks;
    int32_t *block_of;      /* instruction -> block */
    Range *ranges;
    int32_t nranges;
    int32_t *irrange;       /* IR block -> loop range, -1 */
    int32_t cap_irrange;
    int32_t cap_callees;
    int32_t cur;            /* IR block being filled */
    int32_t curbb;          /* bytecode block being interpreted */
    int line;               /* line of the instruction being interpreted */
    State st;               /* current state */
} Builder;

/* ---- small helpers -------------------------------------------------- */

static int
nomem(Builder *b)
{
    return kl_error(b->d, KL_DIAG_NOMEM, b->line, "out of memory");
}

static void *
alloc(Builder *b, size_t n)
{
    void *p = kl_arena_alloc(b->a, n == 0 ? 1 : n);
    if (p == NULL) {
        nomem(b);
    }
    return p;
}

/* A Python error that should not happen: clear it and report. */
static int
pyfail(Builder *b, const char *what)
{
    PyErr_Clear();
    return kl_internal_error(b->d, "frontend: %s failed", what);
}

static const char *
local_name(Builder *b, int32_t i)
{
    if (b->varnames != NULL && i < PyTuple_GET_SIZE(b->varnames)) {
        const char *s = PyUnicode_AsUTF8(PyTuple_GET_ITEM(b->varnames, i));
        if (s != NULL) {
            return s;
        }
        PyErr_Clear();
    }
    return "?";
}

/* co_names[i] as UTF-8, NULL with d filled if out of range. */
static const char *
name_at(Builder *b, int32_t i)
{
    if (i < 0 || i >= PyTuple_GET_SIZE(b->names)) {
        kl_internal_error(b->d, "frontend: name index out of range");
        return NULL;
    }
    const char *s = PyUnicode_AsUTF8(PyTuple_GET_ITEM(b->names, i));
    if (s == NULL) {
        pyfail(b, "name decoding");
    }
    return s;
}

static Item
item_make(ItemKind kind)
{
    Item it;
    memset(&it, 0, sizeof it);
    it.kind = kind;
    return it;
}

static Item
item_val(int32_t v)
{
    Item it = item_make(IT_VAL);
    it.v[0] = v;
    return it;
}

/* Number of SSA values an item carries. */
static int
item_nvals(const Item *it)
{
    switch (it->kind) {
    case IT_VAL:
        return 1;
    case IT_RANGE:
    case IT_ITER:
        return 3;
    default:
        return 0;
    }
}

static int
item_eq(const Item *x, const Item *y)
{
    if (x->kind != y->kind || x->n != y->n || x->obj != y->obj) {
        return 0;
    }
    for (int k = 0; k < item_nvals(x); k++) {
        if (x->v[k] != y->v[k]) {
            return 0;
        }
    }
    if (x->kind == IT_EXC || x->kind == IT_OBJECT) {
        if ((x->s == NULL) != (y->s == NULL)
            || (x->s != NULL && strcmp(x->s, y->s) != 0)) {
            return 0;
        }
    }
    if (x->kind == IT_TUPLE) {
        for (int32_t i = 0; i < x->n; i++) {
            if (!item_eq(&x->elems[i], &y->elems[i])) {
                return 0;
            }
        }
    }
    return 1;
}

/* Same kind and shape, so values can merge component by component. */
static int
item_mergeable(const Item *x, const Item *y)
{
    if (x->kind != y->kind || item_nvals(x) == 0) {
        return 0;
    }
    return x->kind == IT_VAL || x->n == y->n;
}

/* Reports that `it` cannot be used where a value is needed. */
static int
kind_error(Builder *b, const Item *it)
{
    int line = b->line;
    switch (it->kind) {
    case IT_NONE:
        return kl_compile_error(b->d, line, "None is not supported here");
    case IT_STR:
        return kl_compile_error(b->d, line,
                                "strings are not supported (except as the "
                                "message of raise or assert)");
    case IT_MODULE:
        return kl_compile_error(b->d, line,
                                "a module cannot be used as a value");
    case IT_BUILTIN:
    case IT_METHOD:
    case IT_FUNC:
    case IT_RANGEFN:
        return kl_compile_error(b->d, line,
                                "functions can only be called, not used as "
                                "values");
    case IT_RANGE:
    case IT_ITER:
        return kl_compile_error(b->d, line,
                                "range() and prange() are only supported as "
                                "the iterable of a for loop");
    case IT_EXCCLS:
    case IT_EXC:
    case IT_ASSERT:
        return kl_compile_error(b->d, line,
                                "exceptions can only be raised");
    case IT_TUPLE:
        return kl_compile_error(b->d, line,
                                "tuples are only supported for indexing and "
                                "unpacking");
    case IT_OBJECT:
        return kl_compile_error(b->d, line, "'%s' is not supported",
                                it->s != NULL ? it->s : "object");
    case IT_UNDEF:
    case IT_CONFLICT:
        return kl_compile_error(b->d, line,
                                "a variable may be unassigned or hold "
                                "different kinds of objects here");
    case IT_NULL:
    case IT_VAL:
        break;
    }
    return kl_internal_error(b->d, "frontend: unexpected stack item");
}

/* The SSA value of `it`, or -1 with a diagnostic. */
static int32_t
need_val(Builder *b, const Item *it)
{
    if (it->kind == IT_VAL) {
        return it->v[0];
    }
    kind_error(b, it);
    return -1;
}

/* ---- stack ---------------------------------------------------------- */

static Item *
stack_at(Builder *b, int32_t i)
{
    return &b->st.slots[b->nlocals + i];
}

static int
push(Builder *b, Item it)
{
    if (b->st.depth >= b->stacksize) {
        return kl_internal_error(b->d, "frontend: operand stack overflow");
    }
    *stack_at(b, b->st.depth++) = it;
    return 0;
}

static int
pop(Builder *b, Item *out)
{
    if (b->st.depth <= 0) {
        *out = item_make(IT_UNDEF);
        return kl_internal_error(b->d, "frontend: operand stack underflow");
    }
    *out = *stack_at(b, --b->st.depth);
    return 0;
}

/* Pops a value; -1 when the item is not one. */
static int32_t
pop_val(Builder *b)
{
    Item it;
    if (pop(b, &it) < 0) {
        return -1;
    }
    return need_val(b, &it);
}

static int
state_copy(Builder *b, State *dst, const State *src)
{
    dst->slots = alloc(b, sizeof(Item) * b->nslots);
    if (dst->slots == NULL) {
        return -1;
    }
    memcpy(dst->slots, src->slots, sizeof(Item) * b->nslots);
    dst->depth = src->depth;
    return 0;
}

/* ---- emitting ------------------------------------------------------- */

static int32_t
new_block(Builder *b, int32_t range)
{
    int32_t id = kl_block_new(b->f);
    if (id < 0) {
        nomem(b);
        return -1;
    }
    if (id >= b->cap_irrange) {
        int32_t cap = b->cap_irrange ? 2 * b->cap_irrange : 64;
        while (cap <= id) {
            cap *= 2;
        }
        int32_t *p = kl_arena_grow(b->a, b->irrange, sizeof(int32_t),
                                   b->cap_irrange, cap);
        if (p == NULL) {
            nomem(b);
            return -1;
        }
        b->irrange = p;
        b->cap_irrange = cap;
    }
    b->irrange[id] = range;
    b->f->blocks[id].loop = -1;
    return id;
}

/* Appends an instruction with aux to the current block. */
static int32_t
emit(Builder *b, KlOp op, int32_t aux, int32_t nargs, const int32_t *args)
{
    int32_t id = kl_emit(b->f, b->cur, op, NULL, b->line, nargs, args);
    if (id < 0) {
        nomem(b);
        return -1;
    }
    b->f->insts[id].aux = aux;
    return id;
}

static int32_t
emit2(Builder *b, KlOp op, int32_t aux, int32_t x, int32_t y)
{
    int32_t args[2] = {x, y};
    return emit(b, op, aux, 2, args);
}

static int32_t
const_int(Builder *b, const KlType *t, int64_t v)
{
    int32_t id = kl_const_int(b->f, b->cur, t, v, b->line);
    if (id < 0) {
        nomem(b);
    }
    return id;
}

static int32_t
const_float(Builder *b, const KlType *t, double v)
{
    int32_t id = kl_const_float(b->f, b->cur, t, v, b->line);
    if (id < 0) {
        nomem(b);
    }
    return id;
}

static int32_t
const_complex(Builder *b, const KlType *t, double re, double im)
{
    int32_t id = kl_emit(b->f, b->cur, KL_OP_const, t, b->line, 0, NULL);
    if (id < 0) {
        nomem(b);
        return -1;
    }
    b->f->insts[id].imm.c.re = re;
    b->f->insts[id].imm.c.im = im;
    return id;
}

/* Is value v a constant instruction? */
static int
is_const(Builder *b, int32_t v)
{
    return b->f->insts[v].op == KL_OP_const;
}

/* A branch condition from value v: comparisons are used as they are,
 * anything else goes through py_truth. */
static int32_t
cond_of(Builder *b, int32_t v)
{
    if (b->f->insts[v].op == KL_OP_py_cmp) {
        return v;
    }
    return emit(b, KL_OP_py_truth, 0, 1, &v);
}

/* ---- constants and globals ------------------------------------------ */

static int item_from_const(Builder *b, PyObject *obj, Item *out);

/* Index of callee `fn` in f->callees, appending it when new; -1 on
 * failure. */
static int32_t
callee_index(Builder *b, PyObject *fn)
{
    KlFunc *f = b->f;
    for (int32_t i = 0; i < f->ncallees; i++) {
        if (f->callees[i] == fn) {
            return i;
        }
    }
    if (f->ncallees >= b->cap_callees) {
        int32_t cap = b->cap_callees ? 2 * b->cap_callees : 8;
        void **p = kl_arena_grow(b->a, f->callees, sizeof(void *),
                                 f->ncallees, cap);
        if (p == NULL) {
            return nomem(b);
        }
        f->callees = p;
        b->cap_callees = cap;
    }
    f->callees[f->ncallees] = fn;
    return f->ncallees++;
}

const KlType *
kl_numpy_scalar_type(void *obj)
{
    const char *tn = Py_TYPE((PyObject *)obj)->tp_name;
    if (strncmp(tn, "numpy.", 6) != 0) {
        return NULL;
    }
    const KlType *t = kl_type_from_name(tn + 6);
    return t != NULL && kl_type_is_scalar(t) ? t : NULL;
}

/* A numpy scalar becomes a constant of its (strong) type; returns 1 when
 * obj is one, 0 when not, -1 on error. */
static int
numpy_scalar(Builder *b, PyObject *obj, Item *out)
{
    const KlType *t = kl_numpy_scalar_type(obj);
    if (t == NULL) {
        return 0;
    }
    int32_t v;
    if (t->kind == KL_T_BOOL) {
        int truth = PyObject_IsTrue(obj);
        if (truth < 0) {
            return pyfail(b, "numpy bool conversion");
        }
        v = const_int(b, t, truth);
    } else if (t->kind == KL_T_INT) {
        PyObject *i = PyNumber_Long(obj);
        if (i == NULL) {
            return pyfail(b, "numpy int conversion");
        }
        int64_t x;
        if (t->is_signed) {
            x = PyLong_AsLongLong(i);
        } else {
            x = (int64_t)PyLong_AsUnsignedLongLong(i);
        }
        Py_DECREF(i);
        if (PyErr_Occurred()) {
            return pyfail(b, "numpy int conversion");
        }
        v = const_int(b, t, x);
    } else if (t->kind == KL_T_FLOAT) {
        double x = PyFloat_AsDouble(obj);
        if (x == -1.0 && PyErr_Occurred()) {
            return pyfail(b, "numpy float conversion");
        }
        v = const_float(b, t, x);
    } else {
        Py_complex c = PyComplex_AsCComplex(obj);
        if (c.real == -1.0 && PyErr_Occurred()) {
            return pyfail(b, "numpy complex conversion");
        }
        v = const_complex(b, t, c.real, c.imag);
    }
    if (v < 0) {
        return -1;
    }
    *out = item_val(v);
    return 1;
}

/* Python bool/int/float/complex -> weak constant; 1 if obj is one, 0 if
 * not, -1 on error. */
static int
python_scalar(Builder *b, PyObject *obj, Item *out)
{
    int32_t v;
    if (PyBool_Check(obj)) {
        v = const_int(b, kl_pybool, obj == Py_True);
    } else if (PyLong_Check(obj)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (overflow != 0) {
            return kl_compile_error(b->d, b->line,
                                    "integer constant does not fit in int64");
        }
        if (x == -1 && PyErr_Occurred()) {
            return pyfail(b, "int conversion");
        }
        v = const_int(b, kl_pyint, x);
    } else if (PyFloat_Check(obj)) {
        v = const_float(b, kl_pyfloat, PyFloat_AS_DOUBLE(obj));
    } else if (PyComplex_Check(obj)) {
        Py_complex c = PyComplex_AsCComplex(obj);
        v = const_complex(b, kl_pycomplex, c.real, c.imag);
    } else {
        return 0;
    }
    if (v < 0) {
        return -1;
    }
    *out = item_val(v);
    return 1;
}

/* "module.name" of a builtin function ("abs", "math.sqrt"), NULL if it
 * has no usable names.  Arena memory. */
static const char *
cfunction_pyname(Builder *b, PyObject *obj)
{
    PyObject *mod = PyObject_GetAttrString(obj, "__module__");
    PyObject *name = PyObject_GetAttrString(obj, "__name__");
    const char *res = NULL;
    if (name != NULL && PyUnicode_Check(name)) {
        const char *n = PyUnicode_AsUTF8(name);
        const char *m = NULL;
        if (mod != NULL && PyUnicode_Check(mod)) {
            m = PyUnicode_AsUTF8(mod);
        }
        if (n != NULL) {
            if (m == NULL || strcmp(m, "builtins") == 0) {
                res = kl_arena_strdup(b->a, n);
            } else {
                res = kl_arena_printf(b->a, "%s.%s", m, n);
            }
        }
    }
    Py_XDECREF(mod);
    Py_XDECREF(name);
    PyErr_Clear();
    return res;
}

/* Whether obj is a Python function of kiln._devmath, whose bit helpers
 * (f64_bits, f64_from_bits) are builtins rather than callees. */
static int
is_devmath_fn(PyObject *obj)
{
    if (!PyFunction_Check(obj)) {
        return 0;
    }
    PyObject *mod = PyFunction_GetModule(obj);     /* borrowed */
    return mod != NULL && PyUnicode_Check(mod)
           && PyUnicode_CompareWithASCIIString(mod, "kiln._devmath") == 0;
}

/* Classifies a global or module attribute `obj` reached as `name`. */
static int
resolve_object(Builder *b, PyObject *obj, const char *name, Item *out)
{
    int r;
    if (obj == Py_None) {
        *out = item_make(IT_NONE);
        return 0;
    }
    if ((r = numpy_scalar(b, obj, out)) != 0) {
        return r < 0 ? -1 : 0;
    }
    if ((r = python_scalar(b, obj, out)) != 0) {
        return r < 0 ? -1 : 0;
    }
    if (PyUnicode_Check(obj)) {
        *out = item_make(IT_STR);
        out->obj = obj;
        return 0;
    }
    if (PyModule_Check(obj)) {
        *out = item_make(IT_MODULE);
        out->obj = obj;
        return 0;
    }
    if (obj == (PyObject *)&PyRange_Type
        || (b->prange != NULL && obj == b->prange)) {
        *out = item_make(IT_RANGEFN);
        out->n = obj != (PyObject *)&PyRange_Type;
        return 0;
    }
    const char *pyname = NULL;
    if (obj == (PyObject *)&PyLong_Type) {
        pyname = "int";
    } else if (obj == (PyObject *)&PyFloat_Type) {
        pyname = "float";
    } else if (obj == (PyObject *)&PyBool_Type) {
        pyname = "bool";
    } else if (obj == (PyObject *)&PyComplex_Type) {
        pyname = "complex";
    } else if (PyCFunction_Check(obj) || is_devmath_fn(obj)) {
        pyname = cfunction_pyname(b, obj);
    } else if (PyType_Check(obj)
               && strncmp(((PyTypeObject *)obj)->tp_name, "numpy.", 6) == 0) {
        /* a NumPy scalar type (np.float32): its constructor */
        pyname = ((PyTypeObject *)obj)->tp_name;
    }
    if (pyname != NULL) {
        int id = kl_builtin_lookup(pyname);
        if (id >= 0) {
            *out = item_make(IT_BUILTIN);
            out->n = id;
            return 0;
        }
        name = pyname;
    }
    if (PyExceptionClass_Check(obj)) {
        *out = item_make(IT_EXCCLS);
        out->obj = obj;
        return 0;
    }
    PyObject *fn = obj;
    if (!PyFunction_Check(obj) && !PyType_Check(obj)) {
        /* A kiln dispatcher (or anything wrapping a function): its
         * py_func is what gets compiled along. */
        PyObject *pf = PyObject_GetAttrString(obj, "py_func");
        if (pf == NULL) {
            PyErr_Clear();
        } else {
            /* The wrapper keeps py_func alive; hold it borrowed. */
            Py_DECREF(pf);
            if (PyFunction_Check(pf)) {
                fn = pf;
            }
        }
    }
    if (PyFunction_Check(fn)) {
        int32_t idx = callee_index(b, fn);
        if (idx < 0) {
            return -1;
        }
        *out = item_make(IT_FUNC);
        out->obj = fn;
        out->n = idx;
        return 0;
    }
    *out = item_make(IT_OBJECT);
    out->obj = obj;
    out->s = name;
    return 0;
}

/* Item for co_consts entry obj (LOAD_CONST, defaults). */
static int
item_from_const(Builder *b, PyObject *obj, Item *out)
{
    int r;
    if (obj == Py_None) {
        *out = item_make(IT_NONE);
        return 0;
    }
    if ((r = python_scalar(b, obj, out)) != 0) {
        return r < 0 ? -1 : 0;
    }
    if (PyUnicode_Check(obj)) {
        *out = item_make(IT_STR);
        out->obj = obj;
        return 0;
    }
    if (PyTuple_Check(obj)) {
        Py_ssize_t n = PyTuple_GET_SIZE(obj);
        Item *elems = alloc(b, sizeof(Item) * (size_t)n);
        if (elems == NULL) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (item_from_const(b, PyTuple_GET_ITEM(obj, i), &elems[i]) < 0) {
                return -1;
            }
        }
        *out = item_make(IT_TUPLE);
        out->n = (int32_t)n;
        out->elems = elems;
        return 0;
    }
    if (PyCode_Check(obj)) {
        return kl_compile_error(b->d, b->line,
                                "nested functions, lambdas and "
                                "comprehensions are not supported");
    }
    if (PyBytes_Check(obj)) {
        return kl_compile_error(b->d, b->line, "bytes are not supported");
    }
    if (PyFrozenSet_Check(obj)) {
        return kl_compile_error(b->d, b->line, "sets are not supported");
    }
    if ((r = numpy_scalar(b, obj, out)) != 0) {
        return r < 0 ? -1 : 0;
    }
    return kl_compile_error(b->d, b->line, "constants of type '%s' are not "
                            "supported", Py_TYPE(obj)->tp_name);
}

/* LOAD_GLOBAL: the global, then the builtin, called `name`. */
static int
load_global(Builder *b, const char *name, Item *out)
{
    PyObject *key = PyUnicode_FromString(name);
    if (key == NULL) {
        return pyfail(b, "global name");
    }
    PyObject *obj = PyDict_GetItemWithError(b->globals, key);
    if (obj == NULL && !PyErr_Occurred() && b->builtins != NULL) {
        if (PyDict_Check(b->builtins)) {
            obj = PyDict_GetItemWithError(b->builtins, key);
        } else {
            obj = PyObject_GetItem(b->builtins, key);
            if (obj == NULL) {
                PyErr_Clear();
            } else {
                Py_DECREF(obj);     /* the builtins mapping keeps it */
            }
        }
    }
    Py_DECREF(key);
    if (obj == NULL) {
        PyErr_Clear();
        return kl_compile_error(b->d, b->line, "name '%s' is not defined",
                                name);
    }
    if (strcmp(name, "@pytest_ar") == 0) {
        return kl_compile_error(b->d, b->line, "pytest rewrote this assert "
                                "statement; add PYTEST_DONT_REWRITE to the "
                                "module docstring or run pytest with "
                                "--assert=plain");
    }
    return resolve_object(b, obj, name, out);
}

/* LOAD_ATTR / LOAD_METHOD on a module: the attribute, resolved now. */
static int
module_attr(Builder *b, PyObject *mod, const char *attr, Item *out)
{
    const char *mname = PyModule_GetName(mod);
    if (mname == NULL) {
        PyErr_Clear();
        mname = "?";
    }
    PyObject *obj = PyObject_GetAttrString(mod, attr);
    if (obj == NULL) {
        PyErr_Clear();
        return kl_compile_error(b->d, b->line,
                                "module '%s' has no attribute '%s'", mname,
                                attr);
    }
    /* The module keeps the attribute alive while kiln compiles. */
    Py_DECREF(obj);
    const char *qual = kl_arena_printf(b->a, "%s.%s", mname, attr);
    if (qual == NULL) {
        return nomem(b);
    }
    return resolve_object(b, obj, qual, out);
}

/* ---- calls ---------------------------------------------------------- */

/* Message of an exception constructor call: none or one constant
 * string, with '%' escaped for the raise site's printf format. */
static int
exc_message(Builder *b, const Item *args, int32_t n, const char **msg)
{
    if (n == 0) {
        *msg = "";
        return 0;
    }
    if (n != 1 || args[0].kind != IT_STR) {
        return kl_compile_error(b->d, b->line,
                                "exception arguments must be a single "
                                "constant string");
    }
    const char *s = PyUnicode_AsUTF8(args[0].obj);
    if (s == NULL) {
        return pyfail(b, "string decoding");
    }
    size_t len = strlen(s), k = 0;
    char *out = alloc(b, 2 * len + 1);
    if (out == NULL) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            out[k++] = '%';
        }
        out[k++] = s[i];
    }
    out[k] = '\0';
    *msg = out;
    return 0;
}

/* Values of call arguments args[0..n) into vals. */
static int
arg_vals(Builder *b, const Item *args, int32_t n, int32_t *vals)
{
    for (int32_t i = 0; i < n; i++) {
        if (args[i].kind == IT_STR) {
            return kl_compile_error(b->d, b->line,
                                    "strings are not supported");
        }
        if ((vals[i] = need_val(b, &args[i])) < 0) {
            return -1;
        }
    }
    return 0;
}

/* `range(...)` / `prange(...)`: an IT_RANGE with start, stop, step. */
static int
call_range(Builder *b, int parallel, const Item *args, int32_t n, Item *out)
{
    int32_t v[3];
    if (n < 1 || n > 3) {
        return kl_compile_error(b->d, b->line,
                                "%s() takes 1 to 3 arguments",
                                parallel ? "prange" : "range");
    }
    if (arg_vals(b, args, n, v) < 0) {
        return -1;
    }
    /* range() yields Python ints whatever integer type its arguments
     * have: each becomes int(arg), marked as a range argument */
    for (int32_t i = 0; i < n; i++) {
        if (b->f->insts[v[i]].op == KL_OP_const) {
            continue;
        }
        int32_t conv = emit(b, KL_OP_py_builtin, KL_BI_int, 1, &v[i]);
        if (conv < 0) {
            return -1;
        }
        b->f->insts[conv].imm.i = 1;
        v[i] = conv;
    }
    *out = item_make(IT_RANGE);
    out->n = parallel;
    if (n == 1) {
        out->v[0] = const_int(b, kl_pyint, 0);
        out->v[1] = v[0];
    } else {
        out->v[0] = v[0];
        out->v[1] = v[1];
    }
    out->v[2] = n == 3 ? v[2] : const_int(b, kl_pyint, 1);
    return out->v[0] < 0 || out->v[2] < 0 ? -1 : 0;
}

/* A call to Python function `fn` (callee number idx): missing trailing
 * arguments come from its constant defaults. */
static int
call_python(Builder *b, const Item *callee, const Item *args, int32_t n,
            Item *out)
{
    PyObject *fn = callee->obj;
    PyCodeObject *co = (PyCodeObject *)PyFunction_GET_CODE(fn);
    int32_t nparams = co->co_argcount;
    if (co->co_flags & (CO_VARARGS | CO_VARKEYWORDS)) {
        nparams = n;    /* rejected when the callee itself is compiled */
    }
    if (n > nparams) {
        return kl_compile_error(b->d, b->line,
                                "too many arguments in a call (%d given, "
                                "%d expected)", (int)n, (int)nparams);
    }
    int32_t *vals = alloc(b, sizeof(int32_t) * (size_t)(nparams + 1));
    if (vals == NULL || arg_vals(b, args, n, vals) < 0) {
        return -1;
    }
    if (n < nparams) {
        PyObject *defs = PyFunction_GET_DEFAULTS(fn);
        Py_ssize_t ndefs = defs != NULL ? PyTuple_GET_SIZE(defs) : 0;
        if (nparams - n > ndefs) {
            return kl_compile_error(b->d, b->line,
                                    "too few arguments in a call (%d given, "
                                    "%d expected)", (int)n, (int)nparams);
        }
        for (int32_t i = n; i < nparams; i++) {
            PyObject *dv = PyTuple_GET_ITEM(defs, ndefs - (nparams - i));
            Item it;
            if (item_from_const(b, dv, &it) < 0) {
                return -1;
            }
            if (it.kind != IT_VAL) {
                return kl_compile_error(b->d, b->line,
                                        "default argument values must be "
                                        "numbers");
            }
            vals[i] = it.v[0];
        }
    }
    int32_t id = emit(b, KL_OP_py_call, 0, nparams, vals);
    if (id < 0) {
        return -1;
    }
    b->f->insts[id].imm.i = callee->n;
    *out = item_val(id);
    return 0;
}

/* Calls `callee` with args[0..n) and gives the result item. */
static int
call_item(Builder *b, const Item *callee, const Item *args, int32_t n,
          Item *out)
{
    int32_t *vals;
    int32_t id;
    switch (callee->kind) {
    case IT_BUILTIN:
    case IT_METHOD:
        vals = alloc(b, sizeof(int32_t) * (size_t)(n + 1));
        if (vals == NULL || arg_vals(b, args, n, vals) < 0) {
            return -1;
        }
        if ((id = emit(b, KL_OP_py_builtin, callee->n, n, vals)) < 0) {
            return -1;
        }
        *out = item_val(id);
        return 0;
    case IT_RANGEFN:
        return call_range(b, callee->n, args, n, out);
    case IT_FUNC:
        return call_python(b, callee, args, n, out);
    case IT_EXCCLS:
    case IT_ASSERT:
        *out = item_make(IT_EXC);
        out->obj = callee->kind == IT_EXCCLS ? callee->obj : NULL;
        return exc_message(b, args, n, &out->s);
    case IT_OBJECT:
        return kl_compile_error(b->d, b->line, "%s() is not supported",
                                callee->s != NULL ? callee->s : "this call");
    case IT_MODULE:
        return kl_compile_error(b->d, b->line, "modules are not callable");
    default:
        return kl_compile_error(b->d, b->line,
                                "calling this object is not supported");
    }
}

/* CALL argc: [NULL, callable, args...] or [callable, self, args...]. */
static int
op_call(Builder *b, int32_t argc)
{
    if (b->st.depth < argc + 2) {
        return kl_internal_error(b->d, "frontend: CALL stack underflow");
    }
    int32_t base = b->st.depth - argc - 2;
    Item *x = stack_at(b, base);
    Item *y = stack_at(b, base + 1);
    Item callee, res = item_make(IT_UNDEF);
    Item *args;
    int32_t n;
    if (x->kind == IT_NULL) {
        callee = *y;
        args = stack_at(b, base + 2);
        n = argc;
    } else {
        callee = *x;
        args = y;
        n = argc + 1;
    }
    if (call_item(b, &callee, args, n, &res) < 0) {
        return -1;
    }
    b->st.depth = base;
    return push(b, res);
}

/* ---- subscripts, attributes, tuples --------------------------------- */

/* Index operands of a subscript: a value or a tuple of values. */
static int
index_vals(Builder *b, const Item *idx, int32_t *vals, int32_t *n)
{
    if (idx->kind == IT_TUPLE) {
        if (idx->n > KL_MAX_NDIM) {
            return kl_compile_error(b->d, b->line, "too many indices");
        }
        for (int32_t i = 0; i < idx->n; i++) {
            if ((vals[i] = need_val(b, &idx->elems[i])) < 0) {
                return -1;
            }
        }
        *n = idx->n;
        return 0;
    }
    if ((vals[0] = need_val(b, idx)) < 0) {
        return -1;
    }
    *n = 1;
    return 0;
}

static int
op_binary_subscr(Builder *b)
{
    Item idx, cont;
    if (pop(b, &idx) < 0 || pop(b, &cont) < 0) {
        return -1;
    }
    if (cont.kind == IT_TUPLE && idx.kind == IT_VAL && is_const(b, idx.v[0])) {
        /* Constant index into a compile-time tuple. */
        const KlInst *ci = &b->f->insts[idx.v[0]];
        int64_t k = ci->imm.i;
        if (ci->type == kl_pyint && k < 0) {
            k += cont.n;
        }
        if (ci->type != kl_pyint || k < 0 || k >= cont.n) {
            return kl_compile_error(b->d, b->line, "bad tuple index");
        }
        return push(b, cont.elems[k]);
    }
    int32_t vals[KL_MAX_NDIM + 1], n;
    if ((vals[0] = need_val(b, &cont)) < 0
        || index_vals(b, &idx, vals + 1, &n) < 0) {
        return -1;
    }
    int32_t id = emit(b, KL_OP_py_getitem, 0, n + 1, vals);
    return id < 0 ? -1 : push(b, item_val(id));
}

/* STORE_SUBSCR: TOS1[TOS] = TOS2. */
static int
op_store_subscr(Builder *b)
{
    Item idx, cont, val;
    if (pop(b, &idx) < 0 || pop(b, &cont) < 0 || pop(b, &val) < 0) {
        return -1;
    }
    int32_t vals[KL_MAX_NDIM + 2], n;
    if ((vals[0] = need_val(b, &cont)) < 0
        || (vals[1] = need_val(b, &val)) < 0
        || index_vals(b, &idx, vals + 2, &n) < 0) {
        return -1;
    }
    return emit(b, KL_OP_py_setitem, 0, n + 2, vals) < 0 ? -1 : 0;
}

static int
attr_of(const char *name)
{
    static const char *const names[] = {"shape", "size", "ndim", "real",
                                        "imag"};
    static const int ids[] = {KL_ATTR_SHAPE, KL_ATTR_SIZE, KL_ATTR_NDIM,
                              KL_ATTR_REAL, KL_ATTR_IMAG};
    for (int i = 0; i < 5; i++) {
        if (strcmp(name, names[i]) == 0) {
            return ids[i];
        }
    }
    return -1;
}

static int
op_load_attr(Builder *b, const char *name)
{
    Item owner, res;
    if (pop(b, &owner) < 0) {
        return -1;
    }
    if (owner.kind == IT_MODULE) {
        if (module_attr(b, owner.obj, name, &res) < 0) {
            return -1;
        }
        return push(b, res);
    }
    if (owner.kind != IT_VAL) {
        return kind_error(b, &owner);
    }
    int attr = attr_of(name);
    if (attr < 0) {
        return kl_compile_error(b->d, b->line,
                                "attribute '.%s' is not supported", name);
    }
    int32_t id = emit(b, KL_OP_py_getattr, attr, 1, &owner.v[0]);
    return id < 0 ? -1 : push(b, item_val(id));
}

/* LOAD_METHOD: pushes [method, self] or [NULL, attribute]. */
static int
op_load_method(Builder *b, const char *name)
{
    Item owner, res;
    if (pop(b, &owner) < 0) {
        return -1;
    }
    if (owner.kind == IT_MODULE) {
        if (module_attr(b, owner.obj, name, &res) < 0) {
            return -1;
        }
        if (push(b, item_make(IT_NULL)) < 0) {
            return -1;
        }
        return push(b, res);
    }
    if (owner.kind != IT_VAL) {
        return kind_error(b, &owner);
    }
    char dotted[128];
    snprintf(dotted, sizeof dotted, ".%s", name);
    int id = kl_builtin_lookup(dotted);
    if (id < 0) {
        return kl_compile_error(b->d, b->line,
                                "method '.%s()' is not supported", name);
    }
    res = item_make(IT_METHOD);
    res.n = id;
    if (push(b, res) < 0) {
        return -1;
    }
    return push(b, owner);
}

static int
op_build_tuple(Builder *b, int32_t n)
{
    if (b->st.depth < n) {
        return kl_internal_error(b->d, "frontend: BUILD_TUPLE underflow");
    }
    Item *elems = alloc(b, sizeof(Item) * (size_t)n);
    if (elems == NULL) {
        return -1;
    }
    b->st.depth -= n;
    for (int32_t i = 0; i < n; i++) {
        elems[i] = *stack_at(b, b->st.depth + i);
        if (elems[i].kind == IT_NULL) {
            return kl_internal_error(b->d, "frontend: NULL in a tuple");
        }
    }
    Item t = item_make(IT_TUPLE);
    t.n = n;
    t.elems = elems;
    return push(b, t);
}

/* UNPACK_SEQUENCE n: a compile-time tuple, or a value (a shape tuple)
 * indexed with constants 0..n-1. */
static int
op_unpack(Builder *b, int32_t n)
{
    Item seq;
    if (pop(b, &seq) < 0) {
        return -1;
    }
    if (seq.kind == IT_TUPLE) {
        if (seq.n != n) {
            return kl_compile_error(b->d, b->line,
                                    "cannot unpack %d values into %d names",
                                    (int)seq.n, (int)n);
        }
        for (int32_t i = n - 1; i >= 0; i--) {
            if (push(b, seq.elems[i]) < 0) {
                return -1;
            }
        }
        return 0;
    }
    if (seq.kind != IT_VAL) {
        return kind_error(b, &seq);
    }
    int32_t *items = alloc(b, sizeof(int32_t) * (size_t)(n + 1));
    if (items == NULL) {
        return -1;
    }
    for (int32_t i = 0; i < n; i++) {
        int32_t k = const_int(b, kl_pyint, i);
        if (k < 0 || (items[i] = emit2(b, KL_OP_py_getitem, 0, seq.v[0],
                                        k)) < 0) {
            return -1;
        }
    }
    for (int32_t i = n - 1; i >= 0; i--) {
        if (push(b, item_val(items[i])) < 0) {
            return -1;
        }
    }
    return 0;
}

/* GET_ITER on a range call: an iterator, after checking a step that is
 * not a known non-zero constant. */
static int
op_get_iter(Builder *b)
{
    Item r;
    if (pop(b, &r) < 0) {
        return -1;
    }
    if (r.kind != IT_RANGE) {
        return kl_compile_error(b->d, b->line,
                                "for loops are only supported over range() "
                                "and prange()");
    }
    int32_t step = r.v[2];
    const KlInst *si = &b->f->insts[step];
    int known = si->op == KL_OP_const
                && (si->type == kl_pyint
                    || (si->type != NULL && si->type->kind == KL_T_INT))
                && si->imm.i != 0;
    if (!known) {
        int32_t zero = const_int(b, kl_pyint, 0);
        int32_t eq = zero < 0 ? -1 : emit2(b, KL_OP_py_cmp, KL_CMP_EQ, step,
                                           zero);
        int32_t range = b->blocks[b->curbb].range;
        int32_t bad = new_block(b, range);
        int32_t ok = new_block(b, range);
        if (eq < 0 || bad < 0 || ok < 0
            || kl_branch(b->f, b->cur, eq, bad, ok, b->line) < 0) {
            return eq < 0 ? -1 : nomem(b);
        }
        int32_t site = kl_raise_site(b->m, KL_EXC_VALUE, b->line, NULL,
                                     "range() arg 3 must not be zero");
        b->cur = bad;
        int32_t rid = site < 0 ? -1 : emit(b, KL_OP_raise, 0, 0, NULL);
        if (rid < 0) {
            return nomem(b);
        }
        b->f->insts[rid].type = kl_void;
        b->f->insts[rid].imm.i = site;
        b->cur = ok;
    }
    r.kind = IT_ITER;
    return push(b, r);
}

/* ---- edges and block entry ------------------------------------------ */

static int emit_edge(Builder *b, int32_t target, int32_t from,
                     const State *st, int line);

/* Records control passing from IR block `from` (not yet terminated) to
 * bytecode block `target` with state st. */
static int
add_edge(Builder *b, int32_t target, int32_t from, const State *st)
{
    BcBlock *t = &b->blocks[target];
    if (t->done) {
        return emit_edge(b, target, from, st, b->line);
    }
    Edge *e = alloc(b, sizeof(Edge));
    if (e == NULL || state_copy(b, &e->st, st) < 0) {
        return -1;
    }
    e->from = from;
    e->line = b->line;
    e->next = t->pending;
    t->pending = e;
    return 0;
}

/* An edge into the already entered block `target`: one jump argument
 * per block parameter; non-parameter slots must agree with the entry. */
static int
emit_edge(Builder *b, int32_t target, int32_t from, const State *st,
          int line)
{
    BcBlock *t = &b->blocks[target];
    if (st->depth != t->entry.depth) {
        return kl_internal_error(b->d, "frontend: stack depths differ at a "
                                 "join");
    }
    int32_t *args = alloc(b, sizeof(int32_t) * (size_t)(t->nparams + 1));
    if (args == NULL) {
        return -1;
    }
    int32_t nslots = b->nlocals + st->depth;
    for (int32_t s = 0; s < nslots; s++) {
        const Item *want = &t->entry.slots[s];
        const Item *have = &st->slots[s];
        if (item_nvals(want) == 0 && want->kind != IT_UNDEF
            && want->kind != IT_CONFLICT && !item_eq(want, have)) {
            return kl_compile_error(b->d, line,
                                    "a variable holds different kinds of "
                                    "objects on different paths");
        }
    }
    for (int32_t j = 0; j < t->nparams; j++) {
        const PSlot *p = &t->params[j];
        const Item *want = &t->entry.slots[p->slot];
        const Item *have = &st->slots[p->slot];
        if (have->kind == IT_UNDEF && want->kind == IT_VAL) {
            int32_t u = kl_emit(b->f, from, KL_OP_undef, NULL, line, 0, NULL);
            if (u < 0) {
                return nomem(b);
            }
            args[j] = u;
        } else if (item_mergeable(want, have)) {
            args[j] = have->v[p->comp];
        } else {
            return kl_compile_error(b->d, line,
                                    "a variable holds different kinds of "
                                    "objects on different paths");
        }
    }
    if (kl_jump(b->f, from, t->ir, t->nparams, args, line) < 0) {
        return nomem(b);
    }
    return 0;
}

/* Adds a block parameter for component comp of slot s. */
static int32_t
add_param(Builder *b, BcBlock *t, int32_t s, int32_t comp, PSlot *params)
{
    int32_t p = kl_bparam_add(b->f, t->ir, NULL);
    if (p < 0) {
        nomem(b);
        return -1;
    }
    b->f->insts[p].line = b->line;
    params[t->nparams].slot = s;
    params[t->nparams].comp = comp;
    t->nparams++;
    return p;
}

/* Entry item of slot s from all pending edges.  With `force` (a block
 * entered before all its predecessors) every value becomes a parameter,
 * and an unassigned live local too. */
static int
merge_slot(Builder *b, BcBlock *t, int32_t s, int force, PSlot *params,
           Item *out)
{
    int is_local = s < b->nlocals;
    const Item *first = NULL;
    int any_undef = 0, all_eq = 1, compatible = 1, any_conflict = 0;
    for (Edge *e = t->pending; e != NULL; e = e->next) {
        const Item *it = &e->st.slots[s];
        if (it->kind == IT_UNDEF) {
            any_undef = 1;
            continue;
        }
        if (it->kind == IT_CONFLICT) {
            any_conflict = 1;
        }
        if (first == NULL) {
            first = it;
        } else {
            all_eq &= item_eq(first, it);
            compatible &= item_mergeable(first, it);
        }
    }
    if (first == NULL) {
        /* Unassigned everywhere so far. */
        if (force && is_local) {
            *out = item_make(IT_VAL);
            return (out->v[0] = add_param(b, t, s, 0, params)) < 0 ? -1 : 0;
        }
        *out = item_make(IT_UNDEF);
        return 0;
    }
    int nv = item_nvals(first);
    if (!any_conflict && (nv > 0 ? compatible && (!any_undef
                                                  || first->kind == IT_VAL)
                                 : all_eq && !any_undef)) {
        *out = *first;
        for (int k = 0; k < nv; k++) {
            int same = !any_undef;
            for (Edge *e = t->pending; e != NULL && same; e = e->next) {
                same = e->st.slots[s].v[k] == first->v[k];
            }
            if (force || !same) {
                if ((out->v[k] = add_param(b, t, s, k, params)) < 0) {
                    return -1;
                }
            }
        }
        return 0;
    }
    if (is_local) {
        *out = item_make(IT_CONFLICT);
        return 0;
    }
    return kl_compile_error(b->d, b->line,
                            "an expression has different kinds of values "
                            "on different paths");
}

/* Creates the IR block of bytecode block bb from its pending edges and
 * makes it the current one with its entry state. */
static int
enter_block(Builder *b, int32_t bb)
{
    BcBlock *t = &b->blocks[bb];
    int sealed = 1;
    for (int32_t i = 0; i < t->preds.len; i++) {
        BcBlock *p = &b->blocks[t->preds.items[i]];
        if (p->reachable && !p->done) {
            sealed = 0;
        }
    }
    int32_t depth = t->pending->st.depth;
    for (Edge *e = t->pending; e != NULL; e = e->next) {
        if (e->st.depth != depth) {
            return kl_internal_error(b->d, "frontend: stack depths differ at "
                                     "a join");
        }
    }
    b->line = b->bc.insts[t->first].line;
    if ((t->ir = new_block(b, t->range)) < 0) {
        return -1;
    }
    PSlot *params = alloc(b, sizeof(PSlot) * 3 * (size_t)(b->nslots + 1));
    t->entry.slots = alloc(b, sizeof(Item) * (size_t)b->nslots);
    if (params == NULL || t->entry.slots == NULL) {
        return -1;
    }
    t->params = params;
    t->entry.depth = depth;
    for (int32_t s = 0; s < b->nlocals + depth; s++) {
        Item *out = &t->entry.slots[s];
        if (s < b->nlocals && !t->live[s]) {
            *out = item_make(IT_UNDEF);
        } else if (merge_slot(b, t, s, !sealed, params, out) < 0) {
            return -1;
        }
    }
    t->done = 1;
    for (Edge *e = t->pending; e != NULL; e = e->next) {
        if (emit_edge(b, bb, e->from, &e->st, e->line) < 0) {
            return -1;
        }
    }
    t->pending = NULL;
    b->cur = t->ir;
    b->curbb = bb;
    return state_copy(b, &b->st, &t->entry);
}

/* ---- terminators ---------------------------------------------------- */

/* Innermost loop range holding both ranges x and y (-1: none). */
static int32_t
common_range(Builder *b, int32_t x, int32_t y)
{
    for (int32_t i = x; i >= 0; i = b->ranges[i].parent) {
        for (int32_t j = y; j >= 0; j = b->ranges[j].parent) {
            if (i == j) {
                return i;
            }
        }
    }
    return -1;
}

/* A fresh block on the way to bytecode block `target`; the edge from it
 * is recorded with state st.  It lies in the innermost loop holding both
 * ends of the edge. */
static int32_t
trampoline(Builder *b, int32_t target, const State *st)
{
    int32_t t = new_block(b, common_range(b, b->blocks[b->curbb].range,
                                          b->blocks[target].range));
    if (t < 0) {
        return -1;
    }
    return add_edge(b, target, t, st) < 0 ? -1 : t;
}

/* Conditional edge pair: if cond goes to yes (state sy) else to no (sn). */
static int
branch_to(Builder *b, int32_t cond, int32_t yes, const State *sy, int32_t no,
          const State *sn)
{
    int32_t ty = trampoline(b, yes, sy);
    int32_t tn = ty < 0 ? -1 : trampoline(b, no, sn);
    if (tn < 0) {
        return -1;
    }
    if (kl_branch(b->f, b->cur, cond, ty, tn, b->line) < 0) {
        return nomem(b);
    }
    return 0;
}

/* FOR_ITER over a range iterator: test, then either the body (counter
 * pushed, iterator advanced by step) or the exit (iterator popped). */
static int
op_for_iter(Builder *b, const KlBcInst *ins, int32_t next)
{
    if (b->st.depth < 1 || stack_at(b, b->st.depth - 1)->kind != IT_ITER) {
        return kl_internal_error(b->d, "frontend: FOR_ITER without a range "
                                 "iterator");
    }
    Item it = *stack_at(b, b->st.depth - 1);
    int32_t header = b->cur;
    int32_t test = emit(b, KL_OP_py_range_test, 0, 3, it.v);
    if (test < 0) {
        return -1;
    }
    int32_t exit_bb = b->block_of[ins->target];
    State sexit;
    if (state_copy(b, &sexit, &b->st) < 0) {
        return -1;
    }
    sexit.depth--;
    int32_t body = new_block(b, b->blocks[next].range);
    int32_t exit = body < 0 ? -1 : trampoline(b, exit_bb, &sexit);
    if (exit < 0) {
        return -1;
    }
    if (kl_branch(b->f, header, test, body, exit, b->line) < 0) {
        return nomem(b);
    }
    b->cur = body;
    int32_t adv = emit2(b, KL_OP_py_binop, KL_BIN_ADD, it.v[0], it.v[2]);
    if (adv < 0) {
        return -1;
    }
    /* Marks the counter advance: lower may saturate it instead of
     * wrapping, so a range ending near the int64 limits terminates. */
    b->f->insts[adv].imm.i = 1;
    Item nit = it;
    nit.v[0] = adv;
    *stack_at(b, b->st.depth - 1) = nit;
    if (push(b, item_val(it.v[0])) < 0
        || add_edge(b, next, body, &b->st) < 0) {
        return -1;
    }
    int32_t r = b->blocks[b->curbb].range;
    if (r >= 0 && b->ranges[r].is_for && b->ranges[r].header == b->curbb) {
        b->ranges[r].body = body;
        b->ranges[r].exit = exit;
        b->ranges[r].parallel = (uint8_t)it.n;
    }
    return 0;
}

/* Conditional jumps that pop their condition. */
static int
op_pop_jump(Builder *b, const KlBcInst *ins, int32_t target, int32_t next)
{
    Item c;
    if (pop(b, &c) < 0) {
        return -1;
    }
    int jump_if;
    switch (ins->op) {
    case POP_JUMP_FORWARD_IF_NONE:
    case POP_JUMP_BACKWARD_IF_NONE:
    case POP_JUMP_FORWARD_IF_NOT_NONE:
    case POP_JUMP_BACKWARD_IF_NOT_NONE: {
        /* Known now: kernel values are never None. */
        int is_none = c.kind == IT_NONE;
        int want = ins->op == POP_JUMP_FORWARD_IF_NONE
                   || ins->op == POP_JUMP_BACKWARD_IF_NONE;
        return add_edge(b, is_none == want ? target : next, b->cur, &b->st);
    }
    case POP_JUMP_FORWARD_IF_TRUE:
    case POP_JUMP_BACKWARD_IF_TRUE:
        jump_if = 1;
        break;
    default:
        jump_if = 0;
        break;
    }
    int32_t v = need_val(b, &c);
    int32_t cond = v < 0 ? -1 : cond_of(b, v);
    if (cond < 0) {
        return -1;
    }
    if (jump_if) {
        return branch_to(b, cond, target, &b->st, next, &b->st);
    }
    return branch_to(b, cond, next, &b->st, target, &b->st);
}

/* JUMP_IF_TRUE_OR_POP / JUMP_IF_FALSE_OR_POP (`or` / `and`): the jumping
 * edge keeps the value, the other pops it. */
static int
op_jump_or_pop(Builder *b, const KlBcInst *ins, int32_t target, int32_t next)
{
    if (b->st.depth < 1) {
        return kl_internal_error(b->d, "frontend: empty stack at a jump");
    }
    int32_t v = need_val(b, stack_at(b, b->st.depth - 1));
    int32_t cond = v < 0 ? -1 : cond_of(b, v);
    State popped;
    if (cond < 0 || state_copy(b, &popped, &b->st) < 0) {
        return -1;
    }
    popped.depth--;
    if (ins->op == JUMP_IF_TRUE_OR_POP) {
        return branch_to(b, cond, target, &b->st, next, &popped);
    }
    return branch_to(b, cond, next, &popped, target, &b->st);
}

/* ---- the interpreter ------------------------------------------------ */

/* CompileError for an opcode outside kiln's language. */
static int
unsupported(Builder *b, int op)
{
    const char *what;
    switch (op) {
    case BUILD_LIST:
    case LIST_APPEND:
    case LIST_EXTEND:
    case LIST_TO_TUPLE:
        what = "lists are not supported";
        break;
    case BUILD_MAP:
    case BUILD_CONST_KEY_MAP:
    case MAP_ADD:
    case DICT_MERGE:
    case DICT_UPDATE:
        what = "dicts are not supported";
        break;
    case BUILD_SET:
    case SET_ADD:
    case SET_UPDATE:
        what = "sets are not supported";
        break;
    case FORMAT_VALUE:
    case BUILD_STRING:
        what = "strings are not supported";
        break;
    case STORE_GLOBAL:
    case DELETE_GLOBAL:
        what = "assigning to global variables is not supported";
        break;
    case STORE_ATTR:
    case DELETE_ATTR:
        what = "assigning to attributes is not supported";
        break;
    case DELETE_FAST:
    case DELETE_SUBSCR:
        what = "del is not supported";
        break;
    case MAKE_FUNCTION:
        what = "nested functions, lambdas and comprehensions are not "
               "supported";
        break;
    case LOAD_CLOSURE:
    case LOAD_DEREF:
    case STORE_DEREF:
    case DELETE_DEREF:
    case LOAD_CLASSDEREF:
        what = "closures are not supported";
        break;
    case IMPORT_NAME:
    case IMPORT_FROM:
    case IMPORT_STAR:
        what = "import is not supported inside a kernel";
        break;
    case BUILD_SLICE:
        what = "slices and sub-arrays are not supported yet";
        break;
    case IS_OP:
        what = "'is' comparisons are not supported";
        break;
    case CONTAINS_OP:
        what = "'in' tests are not supported";
        break;
    case KW_NAMES:
        what = "keyword arguments are not supported";
        break;
    case CALL_FUNCTION_EX:
        what = "calls with *args or **kwargs are not supported";
        break;
    case UNPACK_EX:
        what = "starred assignment is not supported";
        break;
    case RERAISE:
    case PUSH_EXC_INFO:
    case POP_EXCEPT:
    case CHECK_EXC_MATCH:
    case CHECK_EG_MATCH:
    case PREP_RERAISE_STAR:
        what = "try/except is not supported";
        break;
    case BEFORE_WITH:
    case BEFORE_ASYNC_WITH:
    case WITH_EXCEPT_START:
        what = "with statements are not supported";
        break;
    case YIELD_VALUE:
    case RETURN_GENERATOR:
    case SEND:
    case GET_AWAITABLE:
    case GET_AITER:
    case GET_ANEXT:
    case GET_YIELD_FROM_ITER:
    case END_ASYNC_FOR:
    case ASYNC_GEN_WRAP:
        what = "generators and async functions are not supported";
        break;
    case MATCH_CLASS:
    case MATCH_MAPPING:
    case MATCH_SEQUENCE:
    case MATCH_KEYS:
    case GET_LEN:
        what = "match statements are not supported";
        break;
    default:
        return kl_compile_error(b->d, b->line,
                                "unsupported Python construct (bytecode %s)",
                                kl_opcode_name(op));
    }
    return kl_compile_error(b->d, b->line, "%s", what);
}

static const KlBinop nb_to_binop[13] = {
    [NB_ADD] = KL_BIN_ADD,           [NB_AND] = KL_BIN_AND,
    [NB_FLOOR_DIVIDE] = KL_BIN_FLOORDIV, [NB_LSHIFT] = KL_BIN_LSHIFT,
    [NB_MULTIPLY] = KL_BIN_MUL,      [NB_REMAINDER] = KL_BIN_MOD,
    [NB_OR] = KL_BIN_OR,             [NB_POWER] = KL_BIN_POW,
    [NB_RSHIFT] = KL_BIN_RSHIFT,     [NB_SUBTRACT] = KL_BIN_SUB,
    [NB_TRUE_DIVIDE] = KL_BIN_TRUEDIV, [NB_XOR] = KL_BIN_XOR,
};

static int
op_binary(Builder *b, int32_t arg)
{
    int nb = arg >= NB_INPLACE_ADD ? arg - NB_INPLACE_ADD : arg;
    if (nb < 0 || nb > NB_XOR) {
        return kl_internal_error(b->d, "frontend: bad BINARY_OP argument");
    }
    if (nb == NB_MATRIX_MULTIPLY) {
        return kl_compile_error(b->d, b->line,
                                "the @ operator is not supported");
    }
    int32_t y = pop_val(b);
    int32_t x = y < 0 ? -1 : pop_val(b);
    int32_t id = x < 0 ? -1 : emit2(b, KL_OP_py_binop, nb_to_binop[nb], x, y);
    return id < 0 ? -1 : push(b, item_val(id));
}

static int
op_unary(Builder *b, KlUnop u)
{
    int32_t x = pop_val(b);
    int32_t id = x < 0 ? -1 : emit(b, KL_OP_py_unop, u, 1, &x);
    return id < 0 ? -1 : push(b, item_val(id));
}

static int
op_return(Builder *b)
{
    Item it;
    if (pop(b, &it) < 0) {
        return -1;
    }
    int32_t id;
    if (it.kind == IT_NONE) {
        id = emit(b, KL_OP_ret, 0, 0, NULL);
    } else if (it.kind == IT_TUPLE) {
        return kl_compile_error(b->d, b->line,
                                "returning tuples is not supported");
    } else {
        int32_t v = need_val(b, &it);
        id = v < 0 ? -1 : emit(b, KL_OP_ret, 0, 1, &v);
    }
    if (id < 0) {
        return -1;
    }
    b->f->insts[id].type = kl_void;
    return 0;
}

static int
op_raise(Builder *b, int32_t argc)
{
    if (argc == 0) {
        return kl_compile_error(b->d, b->line,
                                "re-raising (bare raise) is not supported");
    }
    if (argc != 1) {
        return kl_compile_error(b->d, b->line,
                                "raise ... from ... is not supported");
    }
    Item it;
    if (pop(b, &it) < 0) {
        return -1;
    }
    KlExcKind kind = KL_EXC_USER;
    void *cls = it.obj;
    const char *msg = "";
    switch (it.kind) {
    case IT_EXCCLS:
        break;
    case IT_ASSERT:
        kind = KL_EXC_ASSERTION;
        cls = NULL;
        break;
    case IT_EXC:
        msg = it.s;
        if (cls == NULL) {
            kind = KL_EXC_ASSERTION;
        }
        break;
    default:
        return kl_compile_error(b->d, b->line,
                                "only exception classes and instances with "
                                "a constant message can be raised");
    }
    int32_t site = kl_raise_site(b->m, kind, b->line, cls, msg);
    int32_t id = site < 0 ? -1 : emit(b, KL_OP_raise, 0, 0, NULL);
    if (id < 0) {
        return nomem(b);
    }
    b->f->insts[id].type = kl_void;
    b->f->insts[id].imm.i = site;
    return 0;
}

/* Interprets one instruction that does not end its block. */
static int
step(Builder *b, const KlBcInst *ins)
{
    Item it;
    const char *name;
    int32_t arg = ins->arg;
    switch (ins->op) {
    case NOP:
    case RESUME:
    case PRECALL:
    case CACHE:
    case MAKE_CELL:
    case COPY_FREE_VARS:
        /* Closure prologue: the error comes where a cell is used. */
        return 0;
    case POP_TOP:
        return pop(b, &it);
    case PUSH_NULL:
        return push(b, item_make(IT_NULL));
    case COPY:
        if (arg < 1 || arg > b->st.depth) {
            return kl_internal_error(b->d, "frontend: bad COPY");
        }
        return push(b, *stack_at(b, b->st.depth - arg));
    case SWAP:
        if (arg < 1 || arg > b->st.depth) {
            return kl_internal_error(b->d, "frontend: bad SWAP");
        }
        it = *stack_at(b, b->st.depth - 1);
        *stack_at(b, b->st.depth - 1) = *stack_at(b, b->st.depth - arg);
        *stack_at(b, b->st.depth - arg) = it;
        return 0;
    case LOAD_CONST:
        if (arg < 0 || arg >= PyTuple_GET_SIZE(b->consts)) {
            return kl_internal_error(b->d, "frontend: bad constant index");
        }
        if (item_from_const(b, PyTuple_GET_ITEM(b->consts, arg), &it) < 0) {
            return -1;
        }
        return push(b, it);
    case LOAD_FAST:
        if (arg < 0 || arg >= b->nlocals) {
            return kl_internal_error(b->d, "frontend: bad local index");
        }
        it = b->st.slots[arg];
        if (it.kind == IT_UNDEF) {
            return kl_compile_error(b->d, b->line,
                                    "local variable '%s' is used before "
                                    "assignment", local_name(b, arg));
        }
        if (it.kind == IT_CONFLICT) {
            return kl_compile_error(b->d, b->line,
                                    "variable '%s' holds different kinds of "
                                    "objects on different paths",
                                    local_name(b, arg));
        }
        return push(b, it);
    case STORE_FAST:
        if (arg < 0 || arg >= b->nlocals) {
            return kl_internal_error(b->d, "frontend: bad local index");
        }
        if (pop(b, &it) < 0) {
            return -1;
        }
        if (it.kind == IT_NULL || it.kind == IT_ITER) {
            return kl_internal_error(b->d, "frontend: bad store");
        }
        if (it.kind == IT_STR) {
            return kind_error(b, &it);
        }
        b->st.slots[arg] = it;
        return 0;
    case LOAD_GLOBAL:
        if ((name = name_at(b, arg >> 1)) == NULL) {
            return -1;
        }
        if ((arg & 1) && push(b, item_make(IT_NULL)) < 0) {
            return -1;
        }
        if (load_global(b, name, &it) < 0) {
            return -1;
        }
        return push(b, it);
    case LOAD_ATTR:
        name = name_at(b, arg);
        return name == NULL ? -1 : op_load_attr(b, name);
    case LOAD_METHOD:
        name = name_at(b, arg);
        return name == NULL ? -1 : op_load_method(b, name);
    case LOAD_ASSERTION_ERROR:
        return push(b, item_make(IT_ASSERT));
    case CALL:
        return op_call(b, arg);
    case BINARY_OP:
        return op_binary(b, arg);
    case UNARY_POSITIVE:
        return op_unary(b, KL_UN_POS);
    case UNARY_NEGATIVE:
        return op_unary(b, KL_UN_NEG);
    case UNARY_NOT:
        return op_unary(b, KL_UN_NOT);
    case UNARY_INVERT:
        return op_unary(b, KL_UN_INVERT);
    case COMPARE_OP: {
        if (arg < 0 || arg > 5) {
            return kl_internal_error(b->d, "frontend: bad COMPARE_OP");
        }
        int32_t y = pop_val(b);
        int32_t x = y < 0 ? -1 : pop_val(b);
        int32_t id = x < 0 ? -1 : emit2(b, KL_OP_py_cmp, arg, x, y);
        return id < 0 ? -1 : push(b, item_val(id));
    }
    case BINARY_SUBSCR:
        return op_binary_subscr(b);
    case STORE_SUBSCR:
        return op_store_subscr(b);
    case BUILD_TUPLE:
        return op_build_tuple(b, arg);
    case UNPACK_SEQUENCE:
        return op_unpack(b, arg);
    case GET_ITER:
        return op_get_iter(b);
    default:
        return unsupported(b, ins->op);
    }
}

/* Interprets the block's last instruction and passes control on. */
static int
finish_block(Builder *b, const KlBcInst *ins, int32_t next)
{
    int32_t target = ins->target >= 0 ? b->block_of[ins->target] : -1;
    if (ins->flow == KL_FLOW_COND && (target < 0 || next < 0)) {
        return kl_internal_error(b->d, "frontend: conditional jump at the "
                                 "end of the code");
    }
    switch (ins->op) {
    case RETURN_VALUE:
        return op_return(b);
    case RAISE_VARARGS:
        return op_raise(b, ins->arg);
    case JUMP_FORWARD:
    case JUMP_BACKWARD:
    case JUMP_BACKWARD_NO_INTERRUPT:
        return add_edge(b, target, b->cur, &b->st);
    case POP_JUMP_FORWARD_IF_FALSE:
    case POP_JUMP_FORWARD_IF_TRUE:
    case POP_JUMP_FORWARD_IF_NONE:
    case POP_JUMP_FORWARD_IF_NOT_NONE:
    case POP_JUMP_BACKWARD_IF_FALSE:
    case POP_JUMP_BACKWARD_IF_TRUE:
    case POP_JUMP_BACKWARD_IF_NONE:
    case POP_JUMP_BACKWARD_IF_NOT_NONE:
        return op_pop_jump(b, ins, target, next);
    case JUMP_IF_TRUE_OR_POP:
    case JUMP_IF_FALSE_OR_POP:
        return op_jump_or_pop(b, ins, target, next);
    case FOR_ITER:
        return op_for_iter(b, ins, next);
    default:
        if (ins->flow != KL_FLOW_NEXT) {
            return unsupported(b, ins->op);
        }
        if (step(b, ins) < 0) {
            return -1;
        }
        if (next < 0) {
            return kl_internal_error(b->d, "frontend: code runs off the end");
        }
        return add_edge(b, next, b->cur, &b->st);
    }
}

/* Enters bytecode block bb and interprets it. */
static int
process_block(Builder *b, int32_t bb)
{
    if (enter_block(b, bb) < 0) {
        return -1;
    }
    BcBlock *t = &b->blocks[bb];
    for (int32_t i = t->first; i < t->last; i++) {
        b->line = b->bc.insts[i].line;
        if (step(b, &b->bc.insts[i]) < 0) {
            return -1;
        }
    }
    b->line = b->bc.insts[t->last].line;
    int32_t next = bb + 1 < b->nblocks ? bb + 1 : -1;
    return finish_block(b, &b->bc.insts[t->last], next);
}

/* ---- bytecode analysis ---------------------------------------------- */

/* Splits the instructions into blocks and links them. */
static int
find_blocks(Builder *b)
{
    int32_t n = b->bc.n;
    const KlBcInst *in = b->bc.insts;
    uint8_t *leader = alloc(b, (size_t)n + 1);
    b->block_of = alloc(b, sizeof(int32_t) * ((size_t)n + 1));
    if (leader == NULL || b->block_of == NULL) {
        return -1;
    }
    leader[0] = 1;
    for (int32_t i = 0; i < n; i++) {
        if (in[i].flow == KL_FLOW_JUMP || in[i].flow == KL_FLOW_COND) {
            leader[in[i].target] = 1;
        }
        if (in[i].flow != KL_FLOW_NEXT) {
            leader[i + 1] = 1;
        }
        if (in[i].op == FOR_ITER) {
            leader[i] = 1;
        }
    }
    b->nblocks = 0;
    for (int32_t i = 0; i < n; i++) {
        b->nblocks += leader[i];
    }
    b->blocks = alloc(b, sizeof(BcBlock) * (size_t)b->nblocks);
    if (b->blocks == NULL) {
        return -1;
    }
    int32_t bb = -1;
    for (int32_t i = 0; i < n; i++) {
        if (leader[i]) {
            bb++;
            b->blocks[bb].first = i;
            b->blocks[bb].range = -1;
            b->blocks[bb].ir = -1;
        }
        b->blocks[bb].last = i;
        b->block_of[i] = bb;
    }
    for (bb = 0; bb < b->nblocks; bb++) {
        BcBlock *t = &b->blocks[bb];
        const KlBcInst *last = &in[t->last];
        int32_t next = bb + 1 < b->nblocks ? bb + 1 : -1;
        t->succ[0] = t->succ[1] = -1;
        switch (last->flow) {
        case KL_FLOW_NEXT:
            t->succ[0] = next;
            break;
        case KL_FLOW_JUMP:
            t->succ[0] = b->block_of[last->target];
            break;
        case KL_FLOW_COND:
            t->succ[0] = b->block_of[last->target];
            t->succ[1] = next;
            break;
        case KL_FLOW_EXIT:
            break;
        }
        for (int k = 0; k < 2; k++) {
            if (t->succ[k] >= 0
                && kl_vec_push(b->a, &b->blocks[t->succ[k]].preds, bb) < 0) {
                return nomem(b);
            }
        }
    }
    /* Reachability from the entry. */
    int32_t *work = alloc(b, sizeof(int32_t) * (size_t)(b->nblocks + 1));
    if (work == NULL) {
        return -1;
    }
    int32_t top = 0;
    work[top++] = 0;
    b->blocks[0].reachable = 1;
    while (top > 0) {
        BcBlock *t = &b->blocks[work[--top]];
        for (int k = 0; k < 2; k++) {
            int32_t s = t->succ[k];
            if (s >= 0 && !b->blocks[s].reachable) {
                b->blocks[s].reachable = 1;
                work[top++] = s;
            }
        }
    }
    return 0;
}

/* Live locals at each block's entry (read before written on some path). */
static int
find_liveness(Builder *b)
{
    int32_t nl = b->nlocals;
    uint8_t *gen = alloc(b, (size_t)b->nblocks * nl + 1);
    uint8_t *kill = alloc(b, (size_t)b->nblocks * nl + 1);
    if (gen == NULL || kill == NULL) {
        return -1;
    }
    for (int32_t bb = 0; bb < b->nblocks; bb++) {
        BcBlock *t = &b->blocks[bb];
        if ((t->live = alloc(b, (size_t)nl + 1)) == NULL) {
            return -1;
        }
        for (int32_t i = t->first; i <= t->last; i++) {
            const KlBcInst *in = &b->bc.insts[i];
            if (in->arg < 0 || in->arg >= nl) {
                continue;
            }
            if (in->op == LOAD_FAST && !kill[bb * nl + in->arg]) {
                gen[bb * nl + in->arg] = 1;
            } else if (in->op == STORE_FAST || in->op == DELETE_FAST) {
                kill[bb * nl + in->arg] = 1;
            }
        }
    }
    int changed = 1;
    while (changed) {
        changed = 0;
        for (int32_t bb = b->nblocks - 1; bb >= 0; bb--) {
            BcBlock *t = &b->blocks[bb];
            for (int32_t v = 0; v < nl; v++) {
                uint8_t live = gen[bb * nl + v];
                for (int k = 0; k < 2 && !live; k++) {
                    int32_t s = t->succ[k];
                    live = s >= 0 && b->blocks[s].live[v]
                           && !kill[bb * nl + v];
                }
                if (live && !t->live[v]) {
                    t->live[v] = 1;
                    changed = 1;
                }
            }
        }
    }
    return 0;
}

static int
range_contains(const Range *r, int32_t i)
{
    return r->first <= i && i <= r->last;
}

/* Loops: each FOR_ITER and each backward jump to a non-FOR_ITER target
 * (a while loop) spans an instruction range; ranges nest. */
static int
find_ranges(Builder *b)
{
    int32_t n = b->bc.n;
    const KlBcInst *in = b->bc.insts;
    b->ranges = alloc(b, sizeof(Range) * ((size_t)n + 1));
    if (b->ranges == NULL) {
        return -1;
    }
    for (int32_t i = 0; i < n; i++) {
        Range r;
        memset(&r, 0, sizeof r);
        r.body = r.exit = r.exit_bc = r.loop = r.parent = -1;
        if (in[i].op == FOR_ITER) {
            r.first = i;
            r.last = in[i].target - 1;
            r.is_for = 1;
        } else if (in[i].target >= 0 && in[i].target <= i
                   && in[in[i].target].op != FOR_ITER) {
            int32_t j;
            for (j = 0; j < b->nranges; j++) {
                Range *o = &b->ranges[j];
                if (!o->is_for && o->first == in[i].target) {
                    if (o->last < i) {
                        o->last = i;
                    }
                    break;
                }
            }
            if (j < b->nranges) {
                continue;
            }
            r.first = in[i].target;
            r.last = i;
        } else {
            continue;
        }
        r.header = b->block_of[r.first];
        b->ranges[b->nranges++] = r;
    }
    /* Sort outer before inner: by first, then by larger extent. */
    for (int32_t i = 1; i < b->nranges; i++) {
        Range r = b->ranges[i];
        int32_t j = i - 1;
        while (j >= 0 && (b->ranges[j].first > r.first
                          || (b->ranges[j].first == r.first
                              && b->ranges[j].last < r.last))) {
            b->ranges[j + 1] = b->ranges[j];
            j--;
        }
        b->ranges[j + 1] = r;
    }
    for (int32_t i = 0; i < b->nranges; i++) {
        Range *r = &b->ranges[i];
        for (int32_t j = i - 1; j >= 0; j--) {
            if (range_contains(&b->ranges[j], r->first)
                && range_contains(&b->ranges[j], r->last)) {
                r->parent = j;
                break;
            }
        }
        if (!r->is_for && r->last + 1 < n) {
            r->exit_bc = b->block_of[r->last + 1];
        }
    }
    for (int32_t bb = 0; bb < b->nblocks; bb++) {
        for (int32_t j = b->nranges - 1; j >= 0; j--) {
            if (range_contains(&b->ranges[j], b->blocks[bb].first)) {
                b->blocks[bb].range = j;
                break;
            }
        }
    }
    return 0;
}

/* Records the loops found in the bytecode and each block's loop. */
static int
make_loops(Builder *b)
{
    KlFunc *f = b->f;
    for (int32_t i = 0; i < b->nranges; i++) {
        Range *r = &b->ranges[i];
        BcBlock *h = &b->blocks[r->header];
        if (!h->done || (r->is_for && r->body < 0)) {
            continue;
        }
        int32_t parent = r->parent;
        while (parent >= 0 && b->ranges[parent].loop < 0) {
            parent = b->ranges[parent].parent;
        }
        int32_t body = r->is_for ? r->body : h->ir;
        int32_t exit = r->exit;
        if (!r->is_for) {
            exit = r->exit_bc >= 0 && b->blocks[r->exit_bc].done
                   ? b->blocks[r->exit_bc].ir : -1;
        }
        r->loop = kl_loop_new(f, h->ir, body, exit,
                              parent >= 0 ? b->ranges[parent].loop : -1,
                              r->parallel);
        if (r->loop < 0) {
            return nomem(b);
        }
    }
    for (int32_t id = 0; id < f->nblocks; id++) {
        int32_t r = b->irrange[id];
        while (r >= 0 && b->ranges[r].loop < 0) {
            r = b->ranges[r].parent;
        }
        f->blocks[id].loop = r >= 0 ? b->ranges[r].loop : -1;
    }
    return 0;
}

/* ---- clean-up ------------------------------------------------------- */

static int32_t
resolve(const int32_t *repl, int32_t v)
{
    while (repl[v] >= 0) {
        v = repl[v];
    }
    return v;
}

static int
is_term_jump(const KlFunc *f, int32_t t)
{
    return t >= 0 && f->insts[t].op == KL_OP_jump;
}

/* Removes block parameters that receive one value v (or themselves) on
 * every edge, recording param -> v in repl (Braun et al.'s trivial phis). */
static int
prune_params(Builder *b, int32_t *repl)
{
    KlFunc *f = b->f;
    KlVec *into = alloc(b, sizeof(KlVec) * (size_t)f->nblocks);
    if (into == NULL) {
        return -1;
    }
    for (int32_t bl = 0; bl < f->nblocks; bl++) {
        int32_t t = kl_block_term(f, bl);
        if (is_term_jump(f, t)
            && kl_vec_push(b->a, &into[f->insts[t].imm.i], t) < 0) {
            return nomem(b);
        }
    }
    int changed = 1;
    while (changed) {
        changed = 0;
        for (int32_t bl = 1; bl < f->nblocks; bl++) {
            KlBlock *blk = &f->blocks[bl];
            for (int32_t j = 0; j < blk->nparams;) {
                int32_t p = blk->insts.items[j], same = -1;
                int trivial = 1;
                for (int32_t k = 0; k < into[bl].len && trivial; k++) {
                    int32_t a = resolve(repl, f->insts[into[bl].items[k]].args[j]);
                    if (a != p && same >= 0 && a != same) {
                        trivial = 0;
                    } else if (a != p) {
                        same = a;
                    }
                }
                if (!trivial || same < 0) {
                    j++;
                    continue;
                }
                repl[p] = same;
                memmove(&blk->insts.items[j], &blk->insts.items[j + 1],
                        sizeof(int32_t) * (size_t)(blk->insts.len - j - 1));
                blk->insts.len--;
                blk->nparams--;
                for (int32_t k = 0; k < into[bl].len; k++) {
                    KlInst *jmp = &f->insts[into[bl].items[k]];
                    memmove(&jmp->args[j], &jmp->args[j + 1],
                            sizeof(int32_t) * (size_t)(jmp->nargs - j - 1));
                    jmp->nargs--;
                }
                changed = 1;
            }
        }
    }
    for (int32_t bl = 0; bl < f->nblocks; bl++) {
        for (int32_t j = 0; j < f->blocks[bl].nparams; j++) {
            f->insts[f->blocks[bl].insts.items[j]].imm.i = j;
        }
    }
    return 0;
}

/* Block `t` is only `jump x` without arguments: returns x, else -1. */
static int32_t
empty_forward(const KlFunc *f, int64_t t)
{
    const KlBlock *blk = &f->blocks[t];
    if (blk->insts.len != 1) {
        return -1;
    }
    const KlInst *j = &f->insts[blk->insts.items[0]];
    return j->op == KL_OP_jump && j->nargs == 0 ? (int32_t)j->imm.i : -1;
}

static void
retarget_loops(KlFunc *f, int32_t from, int32_t to)
{
    for (int32_t i = 0; i < f->nloops; i++) {
        KlLoop *l = &f->loops[i];
        if (l->body == from) {
            l->body = to;
        }
        if (l->exit == from) {
            l->exit = to;
        }
    }
}

static int
is_loop_header(const KlFunc *f, int32_t bl)
{
    for (int32_t i = 0; i < f->nloops; i++) {
        if (f->loops[i].header == bl) {
            return 1;
        }
    }
    return 0;
}

/* Branches straight to the targets of empty trampolines; a branch whose
 * targets coincide becomes a jump. */
static void
bypass_trampolines(Builder *b)
{
    KlFunc *f = b->f;
    for (int32_t bl = 0; bl < f->nblocks; bl++) {
        int32_t t = kl_block_term(f, bl);
        if (t < 0 || f->insts[t].op != KL_OP_branch) {
            continue;
        }
        KlInst *br = &f->insts[t];
        int32_t x;
        /* Chains are short; the bound guards against empty cycles. */
        for (int k = 0; k < 8 && (x = empty_forward(f, br->imm.i)) >= 0
                        && !is_loop_header(f, (int32_t)br->imm.i); k++) {
            retarget_loops(f, (int32_t)br->imm.i, x);
            br->imm.i = x;
        }
        for (int k = 0; k < 8 && (x = empty_forward(f, br->aux)) >= 0
                        && !is_loop_header(f, br->aux); k++) {
            retarget_loops(f, br->aux, x);
            br->aux = x;
        }
        if (br->imm.i == br->aux) {
            br->op = KL_OP_jump;
            br->nargs = 0;
            br->aux = 0;
        }
    }
}

static int
loop_uses_block(const KlFunc *f, int32_t bl)
{
    for (int32_t i = 0; i < f->nloops; i++) {
        const KlLoop *l = &f->loops[i];
        if (l->header == bl || l->body == bl || l->exit == bl) {
            return 1;
        }
    }
    return 0;
}

/* Marks in seen[] the blocks reachable from the entry. */
static int
mark_reachable(Builder *b, uint8_t *seen)
{
    KlFunc *f = b->f;
    int32_t *work = alloc(b, sizeof(int32_t) * (size_t)f->nblocks);
    if (work == NULL) {
        return -1;
    }
    int32_t top = 0;
    seen[0] = 1;
    work[top++] = 0;
    while (top > 0) {
        int32_t t = kl_block_term(f, work[--top]);
        if (t < 0) {
            return kl_internal_error(b->d, "frontend: block without "
                                     "terminator");
        }
        int32_t succ[2] = {-1, -1};
        if (f->insts[t].op == KL_OP_jump) {
            succ[0] = (int32_t)f->insts[t].imm.i;
        } else if (f->insts[t].op == KL_OP_branch) {
            succ[0] = (int32_t)f->insts[t].imm.i;
            succ[1] = f->insts[t].aux;
        }
        for (int k = 0; k < 2; k++) {
            if (succ[k] >= 0 && !seen[succ[k]]) {
                seen[succ[k]] = 1;
                work[top++] = succ[k];
            }
        }
    }
    return 0;
}

/* Appends a block to its only predecessor when that one jumps to it
 * without arguments and both lie in the same loop. */
static int
merge_chains(Builder *b)
{
    KlFunc *f = b->f;
    int32_t *npreds = alloc(b, sizeof(int32_t) * (size_t)f->nblocks);
    uint8_t *seen = alloc(b, (size_t)f->nblocks);
    if (npreds == NULL || seen == NULL || mark_reachable(b, seen) < 0) {
        return -1;
    }
    for (int32_t bl = 0; bl < f->nblocks; bl++) {
        int32_t t = kl_block_term(f, bl);
        if (t < 0 || !seen[bl]) {
            continue;
        }
        if (f->insts[t].op == KL_OP_jump) {
            npreds[f->insts[t].imm.i]++;
        } else if (f->insts[t].op == KL_OP_branch) {
            npreds[f->insts[t].imm.i]++;
            npreds[f->insts[t].aux]++;
        }
    }
    for (int32_t bl = 0; bl < f->nblocks; bl++) {
        while (seen[bl]) {
            KlBlock *blk = &f->blocks[bl];
            int32_t t = kl_block_term(f, bl);
            if (!is_term_jump(f, t) || f->insts[t].nargs != 0) {
                break;
            }
            int32_t to = (int32_t)f->insts[t].imm.i;
            if (to == bl || to == 0 || npreds[to] != 1
                || loop_uses_block(f, to) || b->irrange[to] != b->irrange[bl]) {
                break;
            }
            KlBlock *tb = &f->blocks[to];
            blk->insts.len--;
            for (int32_t k = 0; k < tb->insts.len; k++) {
                int32_t id = tb->insts.items[k];
                if (kl_vec_push(b->a, &blk->insts, id) < 0) {
                    return nomem(b);
                }
                f->insts[id].block = bl;
            }
            tb->insts.len = 0;
            npreds[to] = 0;
        }
    }
    return 0;
}

/* Drops unreachable blocks and unused instructions, renumbering both and
 * applying the parameter replacements in repl. */
static int
compact(Builder *b, const int32_t *repl)
{
    KlFunc *f = b->f;
    int32_t nb = f->nblocks, ni = f->ninsts;
    int32_t *bmap = alloc(b, sizeof(int32_t) * (size_t)nb);
    int32_t *imap = alloc(b, sizeof(int32_t) * (size_t)ni);
    if (bmap == NULL || imap == NULL) {
        return -1;
    }
    uint8_t *seen = alloc(b, (size_t)nb);
    if (seen == NULL || mark_reachable(b, seen) < 0) {
        return -1;
    }
    for (int32_t i = 0; i < nb; i++) {
        bmap[i] = seen[i] ? 0 : -1;
    }
    for (int32_t i = 0; i < ni; i++) {
        imap[i] = -1;
    }
    int32_t nnb = 0, nni = 0;
    for (int32_t bl = 0; bl < nb; bl++) {
        if (bmap[bl] < 0) {
            continue;
        }
        bmap[bl] = nnb++;
        for (int32_t k = 0; k < f->blocks[bl].insts.len; k++) {
            imap[f->blocks[bl].insts.items[k]] = nni++;
        }
    }
    KlInst *insts = alloc(b, sizeof(KlInst) * (size_t)nni);
    KlBlock *blocks = alloc(b, sizeof(KlBlock) * (size_t)nnb);
    if (insts == NULL || blocks == NULL) {
        return -1;
    }
    for (int32_t bl = 0; bl < nb; bl++) {
        if (bmap[bl] < 0) {
            continue;
        }
        KlBlock *nbk = &blocks[bmap[bl]];
        *nbk = f->blocks[bl];
        for (int32_t k = 0; k < nbk->insts.len; k++) {
            int32_t old = nbk->insts.items[k];
            KlInst *in = &insts[imap[old]];
            *in = f->insts[old];
            in->block = bmap[bl];
            for (int32_t a = 0; a < in->nargs; a++) {
                int32_t v = imap[resolve(repl, in->args[a])];
                if (v < 0) {
                    return kl_internal_error(b->d, "frontend: operand "
                                             "defined in a dead block");
                }
                in->args[a] = v;
            }
            if (in->op == KL_OP_jump) {
                in->imm.i = bmap[in->imm.i];
            } else if (in->op == KL_OP_branch) {
                in->imm.i = bmap[in->imm.i];
                in->aux = bmap[in->aux];
            }
            nbk->insts.items[k] = imap[old];
        }
    }
    for (int32_t i = 0; i < f->nloops; i++) {
        KlLoop *l = &f->loops[i];
        l->header = l->header >= 0 ? bmap[l->header] : -1;
        l->body = l->body >= 0 ? bmap[l->body] : -1;
        l->exit = l->exit >= 0 ? bmap[l->exit] : -1;
    }
    f->insts = insts;
    f->ninsts = f->cap_insts = nni;
    f->blocks = blocks;
    f->nblocks = f->cap_blocks = nnb;
    return 0;
}

static int
cleanup(Builder *b)
{
    KlFunc *f = b->f;
    int32_t *repl = alloc(b, sizeof(int32_t) * (size_t)(f->ninsts + 1));
    if (repl == NULL) {
        return -1;
    }
    for (int32_t i = 0; i < f->ninsts; i++) {
        repl[i] = -1;
    }
    if (prune_params(b, repl) < 0) {
        return -1;
    }
    bypass_trampolines(b);
    if (merge_chains(b) < 0) {
        return -1;
    }
    return compact(b, repl);
}

/* ---- entry point ---------------------------------------------------- */

/* Rejects code objects kiln cannot compile at all. */
static int
check_code(Builder *b, PyCodeObject *co)
{
    int line = co->co_firstlineno;
    if (co->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
                        | CO_ITERABLE_COROUTINE)) {
        return kl_compile_error(b->d, line, "generators and async functions "
                                "are not supported");
    }
    if (co->co_flags & (CO_VARARGS | CO_VARKEYWORDS)) {
        return kl_compile_error(b->d, line, "*args and **kwargs parameters "
                                "are not supported");
    }
    if (co->co_kwonlyargcount > 0) {
        return kl_compile_error(b->d, line, "keyword-only parameters are not "
                                "supported");
    }
    return 0;
}

/* try/except and with: anything the exception table covers. */
static int
check_handlers(Builder *b)
{
    PyCodeObject *co = (PyCodeObject *)b->code;
    int line = kl_decode_exc_table_line(b->code, co->co_firstlineno, b->d);
    if (line <= 0) {
        return line;
    }
    for (int32_t i = 0; i < b->bc.n; i++) {
        if (b->bc.insts[i].op == BEFORE_WITH
            || b->bc.insts[i].op == BEFORE_ASYNC_WITH) {
            return kl_compile_error(b->d, b->bc.insts[i].line,
                                    "with statements are not supported");
        }
    }
    return kl_compile_error(b->d, line, "try/except is not supported");
}

static const char *
arena_utf8(Builder *b, PyObject *s, const char *fallback)
{
    const char *u = s != NULL && PyUnicode_Check(s) ? PyUnicode_AsUTF8(s)
                                                     : NULL;
    if (u == NULL) {
        PyErr_Clear();
        u = fallback;
    }
    return kl_arena_strdup(b->a, u);
}

/* Function header: name, parameters, their `arg` instructions. */
static int
make_header(Builder *b, PyCodeObject *co)
{
    KlFunc *f = b->f;
    f->filename = arena_utf8(b, co->co_filename, "<unknown>");
    f->firstline = co->co_firstlineno;
    f->nparams = co->co_argcount;
    f->param_names = alloc(b, sizeof(char *) * (size_t)(f->nparams + 1));
    if (f->filename == NULL || f->param_names == NULL) {
        return nomem(b);
    }
    /* Register block 0 (made by kl_func_new) with the loop map. */
    b->cap_irrange = 64;
    b->irrange = alloc(b, sizeof(int32_t) * 64);
    if (b->irrange == NULL) {
        return -1;
    }
    b->irrange[0] = -1;
    f->blocks[0].loop = -1;
    b->cur = 0;
    b->line = co->co_firstlineno;
    for (int32_t i = 0; i < f->nparams; i++) {
        f->param_names[i] = kl_arena_strdup(b->a, local_name(b, i));
        int32_t id = emit(b, KL_OP_arg, 0, 0, NULL);
        if (id < 0 || f->param_names[i] == NULL) {
            return nomem(b);
        }
        f->insts[id].imm.i = i;
        b->st.slots[i] = item_val(id);
    }
    return 0;
}

/* Interprets every reachable block, in code order, as soon as an edge
 * reaches it. */
static int
interpret(Builder *b)
{
    int progress = 1;
    while (progress) {
        progress = 0;
        for (int32_t bb = 0; bb < b->nblocks; bb++) {
            BcBlock *t = &b->blocks[bb];
            if (t->reachable && !t->done && t->pending != NULL) {
                if (process_block(b, bb) < 0) {
                    return -1;
                }
                progress = 1;
            }
        }
    }
    return 0;
}

static KlFunc *
build(Builder *b)
{
    PyCodeObject *co = (PyCodeObject *)b->code;
    if (check_code(b, co) < 0) {
        return NULL;
    }
    b->consts = co->co_consts;
    b->names = co->co_names;
    b->varnames = PyObject_GetAttrString(b->code, "co_varnames");
    if (b->varnames == NULL || !PyTuple_Check(b->varnames)) {
        pyfail(b, "co_varnames");
        return NULL;
    }
    b->nlocals = co->co_nlocals;
    b->stacksize = co->co_stacksize;
    b->nslots = b->nlocals + b->stacksize;
    if (kl_decode(b->a, b->code, &b->bc, b->d) < 0 || check_handlers(b) < 0) {
        return NULL;
    }
    if (b->bc.n == 0) {
        kl_internal_error(b->d, "frontend: empty code object");
        return NULL;
    }
    const char *qual = arena_utf8(b, co->co_qualname, "<function>");
    if (qual == NULL || (b->f = kl_func_new(b->m, qual)) == NULL) {
        nomem(b);
        return NULL;
    }
    b->st.slots = alloc(b, sizeof(Item) * (size_t)(b->nslots + 1));
    if (b->st.slots == NULL) {
        return NULL;
    }
    b->st.depth = 0;
    if (make_header(b, co) < 0 || find_blocks(b) < 0
        || find_liveness(b) < 0 || find_ranges(b) < 0
        || add_edge(b, 0, 0, &b->st) < 0 || interpret(b) < 0
        || make_loops(b) < 0 || cleanup(b) < 0) {
        return NULL;
    }
    if (co->co_nfreevars > 0 || co->co_ncellvars > 0) {
        /* Cells no reachable instruction touches. */
        kl_compile_error(b->d, co->co_firstlineno,
                         "closures are not supported");
        return NULL;
    }
    return b->f;
}

/* kiln.prange when the kiln package is imported (the package keeps it
 * alive), else NULL. */
static PyObject *
find_prange(void)
{
    PyObject *name = PyUnicode_FromString("kiln");
    PyObject *mod = name != NULL ? PyImport_GetModule(name) : NULL;
    Py_XDECREF(name);
    PyObject *p = mod != NULL ? PyObject_GetAttrString(mod, "prange") : NULL;
    Py_XDECREF(mod);
    Py_XDECREF(p);
    PyErr_Clear();
    return p;
}

/* Drops the references load_devmath took (KlModule.release). */
static void
release_devmath(KlModule *m)
{
    for (int i = 0; i < KL_MATH__COUNT; i++) {
        PyObject *fn = m->devmath_src[i];
        m->devmath_src[i] = NULL;
        Py_XDECREF(fn);
    }
}

/* The text of the pending Python exception ("ImportError: ..."), copied
 * into m's arena, or NULL when out of memory; clears the exception. */
static const char *
pending_error_text(KlModule *m)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *str = value != NULL ? PyObject_Str(value) : NULL;
    const char *text = str != NULL ? PyUnicode_AsUTF8(str) : NULL;
    const char *r = kl_arena_printf(&m->arena, "%s: %s",
                                    type != NULL
                                    ? ((PyTypeObject *)type)->tp_name
                                    : "error",
                                    text != NULL ? text : "?");
    Py_XDECREF(str);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
    return r;
}

/* Vulkan target: on the module's first build, fills m->devmath_src with
 * new references to the functions of kiln._devmath named after the math
 * functions (those the device has no float64 instruction for; others
 * stay NULL); m->release drops them when the module is freed.  The
 * import is tried once per module: when it fails, its error text goes to
 * m->devmath_error, which the SPIR-V backend quotes when it reports a
 * float64 math function as unsupported. */
static void
load_devmath(KlModule *m)
{
    static const char *const names[] = {
#define KL_X(name, nargs) #name,
        KL_MATHFNS(KL_X)
#undef KL_X
    };
    if (m->options.target != 1 || m->devmath_loaded) {
        return;
    }
    m->devmath_loaded = 1;
    m->release = release_devmath;
    PyObject *mod = PyImport_ImportModule("kiln._devmath");
    if (mod == NULL) {
        m->devmath_error = pending_error_text(m);
        return;
    }
    for (int i = 0; i < KL_MATH__COUNT; i++) {
        PyObject *fn = PyObject_GetAttrString(mod, names[i]);
        if (fn != NULL && PyFunction_Check(fn)) {
            m->devmath_src[i] = fn;     /* owned by m (release_devmath) */
        } else {
            Py_XDECREF(fn);
            PyErr_Clear();              /* no implementation: AttributeError */
        }
    }
    Py_DECREF(mod);
}

KlFunc *
kl_build_ir(KlModule *m, void *func, KlDiag *d)
{
    PyObject *fn = func;
    if (!PyFunction_Check(fn)) {
        kl_compile_error(d, 0, "kiln can only compile Python functions");
        return NULL;
    }
    Builder b;
    memset(&b, 0, sizeof b);
    b.m = m;
    b.d = d;
    b.a = &m->arena;
    b.func = fn;
    b.code = PyFunction_GET_CODE(fn);
    b.globals = PyFunction_GET_GLOBALS(fn);
    b.builtins = ((PyFunctionObject *)fn)->func_builtins;
    b.prange = find_prange();
    load_devmath(m);
    KlFunc *f = build(&b);
    Py_XDECREF(b.varnames);
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    return f;
}
