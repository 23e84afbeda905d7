/* types.h: kiln's type system.
 *
 * Types are interned: two equal types are the same pointer, so compare with
 * `==`.  Interned types live for the life of the process (the table is
 * guarded by a lock; creating types is rare and cheap).
 *
 * Weak types model NumPy 2 / NEP 50 promotion: a Python bool, int, float
 * or complex (a literal, a Python-scalar parameter, the result of
 * arithmetic on Python scalars, a range counter) is *weak*: combined with
 * a NumPy-typed value (an array element, a parameter annotated f32) the
 * NumPy type wins.  A weak type is otherwise identical to bool / int64 /
 * float64 / complex128.
 */
#ifndef KILN_TYPES_H
#define KILN_TYPES_H

#include <stdint.h>

typedef enum KlTypeKind {
    KL_T_VOID,      /* no value: result of stores, branches */
    KL_T_NONE,      /* Python None: `return` without a value, `-> None` */
    KL_T_BOOL,      /* bool / np.bool_: i1 in registers, 1 byte in memory */
    KL_T_INT,       /* i8..i64, u8..u64 (bits, is_signed) */
    KL_T_FLOAT,     /* f32, f64 (bits) */
    KL_T_COMPLEX,   /* c64, c128 (bits = size of the pair: 64 or 128) */
    KL_T_ARRAY,     /* ndarray view: elem, ndim, layout, readonly */
    KL_T_SHAPE,     /* the tuple `a.shape`: ndim int64 items */
    KL_T_PTR,       /* address of one array element (elem); primitive IR only */
} KlTypeKind;

typedef enum KlLayout {
    KL_LAYOUT_ANY,  /* any strides (byte strides taken from the array) */
    KL_LAYOUT_C,    /* C-contiguous: strides follow from shape and itemsize */
} KlLayout;

typedef struct KlType KlType;
struct KlType {
    KlTypeKind kind;        /* what sort of type */
    uint8_t bits;           /* INT/FLOAT: width; COMPLEX: 64 or 128 */
    uint8_t is_signed;      /* INT: signed? */
    uint8_t weak;           /* INT/FLOAT/COMPLEX: a Python scalar (NEP 50) */
    uint8_t readonly;       /* ARRAY: writes are a compile error */
    int8_t ndim;            /* ARRAY, SHAPE: number of dimensions */
    KlLayout layout;        /* ARRAY: memory layout */
    const KlType *elem;     /* ARRAY, PTR: element type */
    char name[48];          /* printable: "float32[:, ::1]", "int64" */
};

/* Singletons, valid after kl_types_init(). */
extern const KlType *kl_void, *kl_none, *kl_bool;
extern const KlType *kl_i8, *kl_i16, *kl_i32, *kl_i64;
extern const KlType *kl_u8, *kl_u16, *kl_u32, *kl_u64;
extern const KlType *kl_f32, *kl_f64, *kl_c64, *kl_c128;
/* Python int, float, complex: weak int64, float64, complex128. */
extern const KlType *kl_pyint, *kl_pyfloat, *kl_pycomplex;
/* Python bool (a literal, `not x`, bool(x), a comparison of Python
 * scalars): a weak bool.  NumPy bools (array elements, comparisons
 * involving NumPy values) are kl_bool. */
extern const KlType *kl_pybool;

/* Builds the singletons; 0 on success, -1 when out of memory. */
int kl_types_init(void);

/* Interned constructors; NULL only when out of memory. */
const KlType *kl_type_int(int bits, int is_signed);
const KlType *kl_type_float(int bits);
const KlType *kl_type_complex(int bits);
const KlType *kl_type_array(const KlType *elem, int ndim, KlLayout layout,
                            int readonly);
const KlType *kl_type_shape(int ndim);
const KlType *kl_type_ptr(const KlType *elem);
/* The same type with weak = 0 (identity for non-scalars). */
const KlType *kl_type_strong(const KlType *t);

/* Looks up a scalar by NumPy name ("float32", "int64", "bool", "complex128")
 * or short name ("f32", "i64", "c128"); NULL when unknown. */
const KlType *kl_type_from_name(const char *name);

/* The Python name of a weak type ("bool", "int", "float", "complex"),
 * else t->name: how types read in messages and printed IR. */
const char *kl_type_pyname(const KlType *t);

/* Predicates. */
int kl_type_is_scalar(const KlType *t);     /* bool, int, float, complex */
int kl_type_is_numeric(const KlType *t);    /* int, float, complex */
/* Size in bytes of a scalar in memory (bool: 1; complex128: 16). */
int kl_type_itemsize(const KlType *t);

/* NumPy 2 (NEP 50) promotion of two scalar operand types for arithmetic;
 * the result is weak only when both are weak.  bool+bool is bool. */
const KlType *kl_type_promote(const KlType *a, const KlType *b);

#endif /* KILN_TYPES_H */
