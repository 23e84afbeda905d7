/* types.c: interned types and NumPy 2 (NEP 50) promotion (see types.h). */
#include "types.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Interned types, a linked list of malloc'ed nodes (few hundred at most). */
typedef struct Node {
    struct Node *next;
    KlType t;
} Node;

static Node *interned;
static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;

const KlType *kl_void, *kl_none, *kl_bool;
const KlType *kl_i8, *kl_i16, *kl_i32, *kl_i64;
const KlType *kl_u8, *kl_u16, *kl_u32, *kl_u64;
const KlType *kl_f32, *kl_f64, *kl_c64, *kl_c128;
const KlType *kl_pyint, *kl_pyfloat, *kl_pycomplex, *kl_pybool;

static int
same(const KlType *a, const KlType *b)
{
    return a->kind == b->kind && a->bits == b->bits
           && a->is_signed == b->is_signed && a->weak == b->weak
           && a->readonly == b->readonly && a->ndim == b->ndim
           && a->layout == b->layout && a->elem == b->elem;
}

static void
set_name(KlType *t)
{
    switch (t->kind) {
    case KL_T_VOID:
        strcpy(t->name, "void");
        break;
    case KL_T_NONE:
        strcpy(t->name, "none");
        break;
    case KL_T_BOOL:
        strcpy(t->name, "bool");
        break;
    case KL_T_INT:
        snprintf(t->name, sizeof(t->name), "%sint%d",
                 t->is_signed ? "" : "u", t->bits);
        break;
    case KL_T_FLOAT:
        snprintf(t->name, sizeof(t->name), "float%d", t->bits);
        break;
    case KL_T_COMPLEX:
        snprintf(t->name, sizeof(t->name), "complex%d", t->bits);
        break;
    case KL_T_ARRAY: {
        size_t n = (size_t)snprintf(t->name, sizeof(t->name), "%s[",
                                    t->elem->name);
        for (int i = 0; i < t->ndim; i++) {
            int last = i == t->ndim - 1;
            const char *dim = last && t->layout == KL_LAYOUT_C ? "::1" : ":";
            n += (size_t)snprintf(t->name + n, sizeof(t->name) - n, "%s%s",
                                  dim, last ? "]" : ", ");
        }
        if (t->ndim == 0) {
            n += (size_t)snprintf(t->name + n, sizeof(t->name) - n, "()]");
        }
        if (t->readonly) {
            snprintf(t->name + n, sizeof(t->name) - n, " readonly");
        }
        break;
    }
    case KL_T_SHAPE:
        snprintf(t->name, sizeof(t->name), "shape%d", t->ndim);
        break;
    case KL_T_PTR:
        snprintf(t->name, sizeof(t->name), "ptr(%.40s)", t->elem->name);
        break;
    }
}

/* Returns the interned copy of *proto, creating it when new. */
static const KlType *
intern(const KlType *proto)
{
    pthread_mutex_lock(&intern_lock);
    for (Node *n = interned; n != NULL; n = n->next) {
        if (same(&n->t, proto)) {
            pthread_mutex_unlock(&intern_lock);
            return &n->t;
        }
    }
    Node *n = calloc(1, sizeof(Node));
    if (n != NULL) {
        n->t = *proto;
        set_name(&n->t);
        n->next = interned;
        interned = n;
    }
    pthread_mutex_unlock(&intern_lock);
    return n ? &n->t : NULL;
}

static const KlType *
make(KlTypeKind kind, int bits, int is_signed, int weak)
{
    KlType t = {0};
    t.kind = kind;
    t.bits = (uint8_t)bits;
    t.is_signed = (uint8_t)is_signed;
    t.weak = (uint8_t)weak;
    return intern(&t);
}

const KlType *
kl_type_int(int bits, int is_signed)
{
    return make(KL_T_INT, bits, is_signed, 0);
}

const KlType *
kl_type_float(int bits)
{
    return make(KL_T_FLOAT, bits, 0, 0);
}

const KlType *
kl_type_complex(int bits)
{
    return make(KL_T_COMPLEX, bits, 0, 0);
}

const KlType *
kl_type_array(const KlType *elem, int ndim, KlLayout layout, int readonly)
{
    KlType t = {0};
    t.kind = KL_T_ARRAY;
    t.elem = kl_type_strong(elem);
    t.ndim = (int8_t)ndim;
    t.layout = layout;
    t.readonly = (uint8_t)(readonly != 0);
    return intern(&t);
}

const KlType *
kl_type_shape(int ndim)
{
    KlType t = {0};
    t.kind = KL_T_SHAPE;
    t.ndim = (int8_t)ndim;
    return intern(&t);
}

const KlType *
kl_type_ptr(const KlType *elem)
{
    KlType t = {0};
    t.kind = KL_T_PTR;
    t.elem = elem;
    return intern(&t);
}

const char *
kl_type_pyname(const KlType *t)
{
    if (!t->weak) {
        return t->name;
    }
    switch (t->kind) {
    case KL_T_BOOL:
        return "bool";
    case KL_T_INT:
        return "int";
    case KL_T_FLOAT:
        return "float";
    default:
        return "complex";
    }
}

const KlType *
kl_type_strong(const KlType *t)
{
    if (t == NULL || !t->weak) {
        return t;
    }
    KlType s = *t;
    s.weak = 0;
    return intern(&s);
}

int
kl_types_init(void)
{
    if (kl_void != NULL) {
        return 0;
    }
    kl_none = make(KL_T_NONE, 0, 0, 0);
    kl_bool = make(KL_T_BOOL, 8, 0, 0);
    kl_i8 = kl_type_int(8, 1);
    kl_i16 = kl_type_int(16, 1);
    kl_i32 = kl_type_int(32, 1);
    kl_i64 = kl_type_int(64, 1);
    kl_u8 = kl_type_int(8, 0);
    kl_u16 = kl_type_int(16, 0);
    kl_u32 = kl_type_int(32, 0);
    kl_u64 = kl_type_int(64, 0);
    kl_f32 = kl_type_float(32);
    kl_f64 = kl_type_float(64);
    kl_c64 = kl_type_complex(64);
    kl_c128 = kl_type_complex(128);
    kl_pyint = make(KL_T_INT, 64, 1, 1);
    kl_pyfloat = make(KL_T_FLOAT, 64, 0, 1);
    kl_pycomplex = make(KL_T_COMPLEX, 128, 0, 1);
    kl_pybool = make(KL_T_BOOL, 8, 0, 1);
    const KlType *v = make(KL_T_VOID, 0, 0, 0);
    if (!kl_none || !kl_bool || !kl_i8 || !kl_i16 || !kl_i32 || !kl_i64
        || !kl_u8 || !kl_u16 || !kl_u32 || !kl_u64 || !kl_f32 || !kl_f64
        || !kl_c64 || !kl_c128 || !kl_pyint || !kl_pyfloat || !kl_pycomplex
        || !kl_pybool || !v) {
        return -1;
    }
    kl_void = v;    /* last: marks initialisation complete */
    return 0;
}

const KlType *
kl_type_from_name(const char *name)
{
    static const struct {
        const char *long_name, *short_name;
        const KlType **type;
    } names[] = {
        {"bool", "bool_", &kl_bool},      {"int8", "i8", &kl_i8},
        {"int16", "i16", &kl_i16},        {"int32", "i32", &kl_i32},
        {"int64", "i64", &kl_i64},        {"uint8", "u8", &kl_u8},
        {"uint16", "u16", &kl_u16},       {"uint32", "u32", &kl_u32},
        {"uint64", "u64", &kl_u64},       {"float32", "f32", &kl_f32},
        {"float64", "f64", &kl_f64},      {"complex64", "c64", &kl_c64},
        {"complex128", "c128", &kl_c128}, {"pyint", "int", &kl_pyint},
        {"pyfloat", "float", &kl_pyfloat},
        {"pycomplex", "complex", &kl_pycomplex},
        {"pybool", "pybool", &kl_pybool},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(name, names[i].long_name) == 0
            || strcmp(name, names[i].short_name) == 0) {
            return *names[i].type;
        }
    }
    return NULL;
}

int
kl_type_is_scalar(const KlType *t)
{
    return t->kind == KL_T_BOOL || kl_type_is_numeric(t);
}

int
kl_type_is_numeric(const KlType *t)
{
    return t->kind == KL_T_INT || t->kind == KL_T_FLOAT
           || t->kind == KL_T_COMPLEX;
}

int
kl_type_itemsize(const KlType *t)
{
    return t->kind == KL_T_BOOL ? 1 : t->bits / 8;
}

/* Kind order used by promotion: bool < int < float < complex. */
static int
kind_rank(const KlType *t)
{
    switch (t->kind) {
    case KL_T_BOOL:
        return 0;
    case KL_T_INT:
        return 1;
    case KL_T_FLOAT:
        return 2;
    default:
        return 3;
    }
}

/* Bits of the smallest float holding every value of integer type t
 * exactly, as NumPy chooses it (float16 rounds up to float32 here). */
static int
float_bits_for_int(const KlType *t)
{
    return t->bits <= 16 ? 32 : 64;
}

/* NumPy's table for two strong types. */
static const KlType *
promote_strong(const KlType *a, const KlType *b)
{
    if (kind_rank(a) > kind_rank(b)) {
        const KlType *t = a;
        a = b;
        b = t;
    }
    /* now kind(a) <= kind(b) */
    switch (b->kind) {
    case KL_T_BOOL:
        return kl_bool;
    case KL_T_INT:
        if (a->kind == KL_T_BOOL || a == b) {
            return b;
        }
        if (a->is_signed == b->is_signed) {
            return a->bits > b->bits ? a : b;
        }
        {
            const KlType *s = a->is_signed ? a : b;
            const KlType *u = a->is_signed ? b : a;
            if (u->bits < s->bits) {
                return s;
            }
            return u->bits == 64 ? kl_f64 : kl_type_int(u->bits * 2, 1);
        }
    case KL_T_FLOAT: {
        int need = a->kind == KL_T_BOOL ? 0
                   : a->kind == KL_T_INT ? float_bits_for_int(a) : a->bits;
        return need > b->bits ? kl_type_float(need) : b;
    }
    default: {
        int need = a->kind == KL_T_BOOL ? 0
                   : a->kind == KL_T_INT ? 2 * float_bits_for_int(a)
                   : a->kind == KL_T_FLOAT ? 2 * a->bits : a->bits;
        return need > b->bits ? kl_type_complex(need) : b;
    }
    }
}

/* Default NumPy type of a weak Python scalar's kind. */
static const KlType *
weak_default(const KlType *w)
{
    return kl_type_strong(w);
}

const KlType *
kl_type_promote(const KlType *a, const KlType *b)
{
    if (a->weak && b->weak) {
        /* Python rules: the higher kind wins, still weak */
        return kind_rank(a) >= kind_rank(b) ? a : b;
    }
    if (a->weak || b->weak) {
        const KlType *w = a->weak ? a : b;
        const KlType *s = a->weak ? b : a;
        if (s->kind == KL_T_BOOL) {
            /* NumPy 2: a NumPy bool with a Python number is that number's
               default type (np.True_ + 1 is int64); with a Python bool, a
               NumPy bool */
            return w->kind == KL_T_BOOL ? s : weak_default(w);
        }
        if (kind_rank(w) <= kind_rank(s)) {
            return s;
        }
        if (s->kind == KL_T_FLOAT && w->kind == KL_T_COMPLEX) {
            return kl_type_complex(2 * s->bits);
        }
        return promote_strong(s, weak_default(w));
    }
    return promote_strong(a, b);
}
