/* dispatch.c: the call path of a kiln dispatcher.
 *
 * A call types every argument against its parameter's spec (the one place
 * that decides what a Python object is to kiln: a future buffer-protocol
 * or DLPack path belongs in type_arg), unboxes it into a slot of its exact
 * C type, looks the tuple of resulting interned types up among the
 * compiled specialisations (most recent first, comparing pointers),
 * compiles on a miss, runs the entry with the GIL released and boxes the
 * result or raises what the kernel reported.  The hot path allocates
 * nothing for up to KL_FAST_ARGS arguments.
 *
 * Two choices made here give compiled code what LLVM cannot guess: a
 * C-contiguous array is typed C layout even when its annotation accepts
 * any strides (unit stride: loops vectorise; a strided call compiles its
 * own specialisation), and each call checks whether its array arguments
 * overlap in memory, running code compiled with KlOptions.noalias when
 * none do and the plain code of the same specialisation otherwise.  When
 * they do not, and an array that code only writes (stream_arrays) is at
 * least KL_STREAM_BYTES, the call runs code compiled with
 * KlOptions.stream, whose loops write it around the caches.
 *
 * A kiln.vulkan.DeviceArray is typed here too, as the ndarray over device
 * memory it holds (type_device_array): Vulkan kernels bind that memory
 * directly, CPU kernels refuse it.
 *
 * NumPy is imported on the first call, not at `import kiln`.
 */
#include "dispatch.h"

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <numpy/arrayscalars.h>

#include <dlfcn.h>
#include <string.h>

#include "cache.h"
#include "runtime/vkexec.h"
#include "runtime/vulkan.h"

#define KL_FAST_ARGS 16     /* arguments handled without allocating */
#define KL_STREAM_BYTES ((int64_t)32 << 20)  /* see streams_large */
#define KL_NELEM 13         /* bool, i8..i64, u8..u64, f32, f64, c64, c128 */
#define KL_NTYPENUM 32      /* NumPy type numbers considered */

PyObject *kl_CompileError;
PyObject *kl_DeviceArrayType;

/* One unboxed argument, as compiled code reads it through args[i]. */
typedef union KlSlot {
    uint8_t b;
    int8_t i8;
    int16_t i16;
    int32_t i32;
    int64_t i64;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f32;
    double f64;
    float c64[2];
    double c128[2];
    KlArrayArg arr;
} KlSlot;

/* ---- NumPy tables, built on the first call ---------------------------- */

static int numpy_ready;
static const KlType *elem_types[KL_NELEM];      /* strong scalar types */
static PyArray_Descr *elem_descrs[KL_NELEM];    /* their dtypes */
static int8_t elem_of_typenum[KL_NTYPENUM];     /* elem index + 1; 0: none */
static PyTypeObject *scalar_types[KL_NTYPENUM]; /* numpy scalar classes */
static int8_t scalar_elems[KL_NTYPENUM];        /* ... and their elem index */
static int nscalar_types;
/* Interned array types by elem, ndim, layout (0 any, 1 C), read-only. */
static const KlType *array_types[KL_NELEM][KL_MAX_NDIM + 1][2][2];

/* Index of strong or weak scalar type t in elem_types, -1 if not scalar. */
static int
elem_index(const KlType *t)
{
    switch (t->kind) {
    case KL_T_BOOL:
        return 0;
    case KL_T_INT: {
        int k = t->bits == 8 ? 0 : t->bits == 16 ? 1 : t->bits == 32 ? 2 : 3;
        return (t->is_signed ? 1 : 5) + k;
    }
    case KL_T_FLOAT:
        return t->bits == 32 ? 9 : 10;
    case KL_T_COMPLEX:
        return t->bits == 64 ? 11 : 12;
    default:
        return -1;
    }
}

/* Elem index of a NumPy integer type number of `size` bytes. */
static int
int_elem(int size, int is_signed)
{
    int k = size == 1 ? 0 : size == 2 ? 1 : size == 4 ? 2 : 3;
    return (is_signed ? 1 : 5) + k;
}

/* Imports NumPy's C API and fills the tables above; -1 with an exception
 * set on failure. */
static int
numpy_init(void)
{
    static const struct {
        int typenum;
        int elem;
    } nums[] = {
        {NPY_BOOL, 0},
        {NPY_BYTE, 1}, {NPY_UBYTE, 5},
        {NPY_SHORT, -(int)sizeof(short)}, {NPY_USHORT, (int)sizeof(short)},
        {NPY_INT, -(int)sizeof(int)}, {NPY_UINT, (int)sizeof(int)},
        {NPY_LONG, -(int)sizeof(long)}, {NPY_ULONG, (int)sizeof(long)},
        {NPY_LONGLONG, -(int)sizeof(long long)},
        {NPY_ULONGLONG, (int)sizeof(long long)},
        {NPY_FLOAT, 9}, {NPY_DOUBLE, 10}, {NPY_CFLOAT, 11},
        {NPY_CDOUBLE, 12},
    };
    if (PyArray_ImportNumPyAPI() < 0) {
        return -1;
    }
    const KlType *strong[KL_NELEM] = {
        kl_bool, kl_i8, kl_i16, kl_i32, kl_i64, kl_u8, kl_u16, kl_u32,
        kl_u64, kl_f32, kl_f64, kl_c64, kl_c128,
    };
    memcpy(elem_types, strong, sizeof(strong));
    nscalar_types = 0;
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        int tn = nums[i].typenum;
        int e = nums[i].elem;
        if (tn == NPY_SHORT || tn == NPY_INT || tn == NPY_LONG
            || tn == NPY_LONGLONG) {
            e = int_elem(-e, 1);
        }
        else if (tn == NPY_USHORT || tn == NPY_UINT || tn == NPY_ULONG
                 || tn == NPY_ULONGLONG) {
            e = int_elem(e, 0);
        }
        PyArray_Descr *d = PyArray_DescrFromType(tn);
        if (d == NULL) {
            return -1;
        }
        if (tn < KL_NTYPENUM) {
            elem_of_typenum[tn] = (int8_t)(e + 1);
        }
        scalar_types[nscalar_types] = d->typeobj;
        scalar_elems[nscalar_types] = (int8_t)e;
        nscalar_types++;
        if (elem_descrs[e] == NULL) {
            elem_descrs[e] = d;     /* keeps the reference */
        }
        else {
            Py_DECREF(d);
        }
    }
    numpy_ready = 1;
    return 0;
}

/* ---- specs ------------------------------------------------------------ */

/* The scalar type named by a spec string; NULL when unknown. */
static const KlType *
scalar_by_name(const char *name)
{
    if (strcmp(name, "pyint") == 0) {
        return kl_pyint;
    }
    if (strcmp(name, "pyfloat") == 0) {
        return kl_pyfloat;
    }
    if (strcmp(name, "pycomplex") == 0) {
        return kl_pycomplex;
    }
    const KlType *t = kl_type_from_name(name);
    return (t != NULL && kl_type_is_scalar(t)) ? t : NULL;
}

int
kl_spec_parse(PyObject *obj, KlParamSpec *out)
{
    memset(out, 0, sizeof(*out));
    if (obj == Py_None) {
        out->kind = KL_SPEC_ANY;
        return 0;
    }
    if (PyUnicode_Check(obj)) {
        const char *name = PyUnicode_AsUTF8(obj);
        if (name == NULL) {
            return -1;
        }
        out->kind = KL_SPEC_SCALAR;
        out->type = scalar_by_name(name);
        if (out->type == NULL) {
            PyErr_Format(PyExc_ValueError, "kiln: unknown scalar spec %R", obj);
            return -1;
        }
        return 0;
    }
    const char *elem;
    int ndim, layout;
    if (!PyTuple_Check(obj)
        || !PyArg_ParseTuple(obj, "sii;kiln: malformed array spec", &elem,
                             &ndim, &layout)) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "kiln: malformed spec %R", obj);
        }
        return -1;
    }
    out->kind = KL_SPEC_ARRAY;
    out->type = kl_type_from_name(elem);
    out->ndim = ndim;
    out->layout = layout;
    if (out->type == NULL || !kl_type_is_scalar(out->type)
        || ndim < -1 || ndim > KL_MAX_NDIM || layout < -1 || layout > 1) {
        PyErr_Format(PyExc_ValueError, "kiln: malformed array spec %R", obj);
        return -1;
    }
    return 0;
}

const KlType *
kl_ret_spec_parse(PyObject *obj, int *ok)
{
    *ok = 1;
    if (obj == Py_None) {
        return NULL;
    }
    const char *name = PyUnicode_Check(obj) ? PyUnicode_AsUTF8(obj) : NULL;
    if (name != NULL && strcmp(name, "none") == 0) {
        return kl_none;
    }
    const KlType *t = name != NULL ? scalar_by_name(name) : NULL;
    if (t == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_ValueError, "kiln: malformed return spec %R",
                         obj);
        }
        *ok = 0;
    }
    return t;
}

/* What a spec accepts, for messages: "float32[:]", "float", ... */
static void
spec_name(const KlParamSpec *sp, char *buf, size_t size)
{
    if (sp->kind == KL_SPEC_SCALAR) {
        snprintf(buf, size, "%s", kl_type_pyname(sp->type));
    }
    else if (sp->kind == KL_SPEC_ARRAY && sp->ndim >= 0) {
        const KlType *t = kl_type_array(sp->type, sp->ndim,
                                        sp->layout == KL_LAYOUT_C
                                            ? KL_LAYOUT_C : KL_LAYOUT_ANY, 0);
        snprintf(buf, size, "%s", t != NULL ? t->name : "array");
    }
    else if (sp->kind == KL_SPEC_ARRAY) {
        snprintf(buf, size, "%s array", sp->type->name);
    }
    else {
        snprintf(buf, size, "a supported argument");
    }
}

/* ---- typing and unboxing arguments ----------------------------------- */

static PyObject *
param_name(KlDispatcher *self, int i)
{
    return PyTuple_GET_ITEM(self->names, i);
}

static PyObject *
func_name(KlDispatcher *self)
{
    return ((PyFunctionObject *)self->py_func)->func_name;
}

/* Raises TypeError: argument i does not fit its spec; `got` describes it
 * (NULL: its Python type).  Returns NULL. */
static const KlType *
bad_arg(KlDispatcher *self, int i, PyObject *o, const char *got)
{
    char want[96];
    spec_name(&self->specs[i], want, sizeof(want));
    if (got == NULL) {
        got = o == Py_None ? "None" : Py_TYPE(o)->tp_name;
    }
    PyErr_Format(PyExc_TypeError, "%U() argument '%U': expected %s, got %s",
                 func_name(self), param_name(self, i), want, got);
    return NULL;
}

/* Raises TypeError for an argument kiln cannot take at all. */
static const KlType *
unsupported_arg(KlDispatcher *self, int i, const char *what)
{
    PyErr_Format(PyExc_TypeError, "%U() argument '%U': %s",
                 func_name(self), param_name(self, i), what);
    return NULL;
}

/* The interned array type for elem e, ndim, layout, read-only flag. */
static const KlType *
array_type(int e, int ndim, int layout, int ro)
{
    const KlType **p = &array_types[e][ndim][layout][ro];
    if (*p == NULL) {
        *p = kl_type_array(elem_types[e], ndim,
                           layout ? KL_LAYOUT_C : KL_LAYOUT_ANY, ro);
        if (*p == NULL) {
            PyErr_NoMemory();
        }
    }
    return *p;
}

/* Types ndarray a for parameter i and points slot at its data. */
static const KlType *
type_array(KlDispatcher *self, int i, PyArrayObject *a, KlSlot *slot)
{
    const KlParamSpec *sp = &self->specs[i];
    PyArray_Descr *d = PyArray_DESCR(a);
    int tn = d->type_num;
    int e = (tn >= 0 && tn < KL_NTYPENUM) ? elem_of_typenum[tn] - 1 : -1;
    int ndim = PyArray_NDIM(a);
    int flags = PyArray_FLAGS(a);
    char got[96];
    if (e < 0 || !PyArray_ISNBO(d->byteorder)) {
        PyObject *s = PyObject_Str((PyObject *)d);
        const char *ds = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
        if (ds == NULL) {
            Py_XDECREF(s);
            return NULL;
        }
        snprintf(got, sizeof(got), "an array of dtype %.40s%s", ds,
                 e >= 0 ? " (non-native byte order)" : "");
        Py_DECREF(s);
        if (sp->kind == KL_SPEC_ANY) {
            char what[128];
            snprintf(what, sizeof(what), "%s is not supported", got);
            return unsupported_arg(self, i, what);
        }
        return bad_arg(self, i, (PyObject *)a, got);
    }
    if (ndim > KL_MAX_NDIM) {
        snprintf(got, sizeof(got), "a %d-dimensional array (kiln supports "
                 "up to %d)", ndim, KL_MAX_NDIM);
        return unsupported_arg(self, i, got);
    }
    int contig = (flags & NPY_ARRAY_C_CONTIGUOUS) != 0;
    int ro = (flags & NPY_ARRAY_WRITEABLE) == 0;
    int layout = contig;
    if (sp->kind == KL_SPEC_SCALAR) {
        return bad_arg(self, i, (PyObject *)a,
                       array_type(e, ndim, 0, 0)->name);
    }
    if (sp->kind == KL_SPEC_ARRAY) {
        if (elem_types[e] != sp->type || (sp->ndim >= 0 && ndim != sp->ndim)) {
            return bad_arg(self, i, (PyObject *)a,
                           array_type(e, ndim, 0, 0)->name);
        }
        if (sp->layout == KL_LAYOUT_C && !contig) {
            snprintf(got, sizeof(got), "%s (not C-contiguous)",
                     array_type(e, ndim, 0, 0)->name);
            return bad_arg(self, i, (PyObject *)a, got);
        }
        /* `f32[:]` accepts any layout: a C-contiguous argument still
         * gets C-layout code; kl_signature_str shows the annotation */
    }
    if ((flags & NPY_ARRAY_ALIGNED) == 0) {
        return unsupported_arg(self, i, "unaligned arrays are not supported");
    }
    slot->arr.data = PyArray_BYTES(a);
    slot->arr.shape = (const int64_t *)PyArray_DIMS(a);
    slot->arr.strides = (const int64_t *)PyArray_STRIDES(a);
    return array_type(e, ndim, layout, ro);
}

/* A scalar argument's value before conversion to its parameter's type. */
typedef struct ScalarVal {
    const KlType *own;      /* its own kiln type (weak for Python scalars) */
    int rank;               /* 0 bool, 1 int, 2 float, 3 complex */
    int is_unsigned;        /* rank 1: value is in u, not i */
    int64_t i;              /* rank 0-1 */
    uint64_t u;             /* rank 1, unsigned */
    double re, im;          /* rank 2-3 */
    PyObject *pyint;        /* a Python int, for range messages */
} ScalarVal;

/* Reads the value of numpy scalar o of elem e into v. */
static void
numpy_scalar_value(PyObject *o, int e, ScalarVal *v)
{
    KlSlot buf;     /* npy_bool is one byte, as KlSlot.b */
    memset(&buf, 0, sizeof(buf));
    PyArray_ScalarAsCtype(o, &buf);
    v->own = elem_types[e];
    switch (e) {
    case 0: v->rank = 0; v->i = buf.b != 0; break;
    case 1: v->rank = 1; v->i = buf.i8; break;
    case 2: v->rank = 1; v->i = buf.i16; break;
    case 3: v->rank = 1; v->i = buf.i32; break;
    case 4: v->rank = 1; v->i = buf.i64; break;
    case 5: v->rank = 1; v->i = buf.u8; break;
    case 6: v->rank = 1; v->i = buf.u16; break;
    case 7: v->rank = 1; v->i = buf.u32; break;
    case 8: v->rank = 1; v->is_unsigned = 1; v->u = buf.u64; break;
    case 9: v->rank = 2; v->re = buf.f32; break;
    case 10: v->rank = 2; v->re = buf.f64; break;
    case 11: v->rank = 3; v->re = buf.c64[0]; v->im = buf.c64[1]; break;
    default: v->rank = 3; v->re = buf.c128[0]; v->im = buf.c128[1]; break;
    }
}

/* Classifies scalar o into v: 1 when it is one, 0 when not, -1 on error. */
static int
scalar_value(PyObject *o, ScalarVal *v)
{
    memset(v, 0, sizeof(*v));
    PyTypeObject *tp = Py_TYPE(o);
    if (tp == &PyFloat_Type) {
        v->own = kl_pyfloat;
        v->rank = 2;
        v->re = PyFloat_AS_DOUBLE(o);
        return 1;
    }
    if (tp == &PyBool_Type) {
        v->own = kl_pybool;
        v->i = o == Py_True;
        return 1;
    }
    for (int k = 0; k < nscalar_types; k++) {
        if (tp == scalar_types[k]) {
            numpy_scalar_value(o, scalar_elems[k], v);
            return 1;
        }
    }
    if (PyLong_Check(o)) {
        int overflow;
        v->own = kl_pyint;
        v->rank = 1;
        v->pyint = o;
        v->i = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (v->i == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (overflow > 0) {
            v->u = PyLong_AsUnsignedLongLong(o);
            if (v->u == (uint64_t)-1 && PyErr_Occurred()) {
                PyErr_Clear();
                v->is_unsigned = 2;     /* beyond uint64 */
            }
            else {
                v->is_unsigned = 1;
            }
        }
        else if (overflow < 0) {
            v->is_unsigned = 2;
        }
        return 1;
    }
    if (PyFloat_Check(o)) {
        v->own = kl_pyfloat;
        v->rank = 2;
        v->re = PyFloat_AsDouble(o);
        return (v->re == -1.0 && PyErr_Occurred()) ? -1 : 1;
    }
    if (PyComplex_Check(o)) {
        Py_complex c = PyComplex_AsCComplex(o);
        if (c.real == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        v->own = kl_pycomplex;
        v->rank = 3;
        v->re = c.real;
        v->im = c.imag;
        return 1;
    }
    return 0;
}

/* Rank of a scalar type: 0 bool, 1 int, 2 float, 3 complex. */
static int
type_rank(const KlType *t)
{
    return t->kind == KL_T_BOOL ? 0 : t->kind == KL_T_INT ? 1
           : t->kind == KL_T_FLOAT ? 2 : 3;
}

/* Whether Python int v fits integer type t (NumPy 2 refuses to wrap). */
static int
pyint_fits(const ScalarVal *v, const KlType *t)
{
    if (v->is_unsigned == 2) {
        return 0;
    }
    if (v->is_unsigned == 1) {
        return !t->is_signed && t->bits == 64;
    }
    if (t->is_signed) {
        int64_t lim = t->bits == 64 ? INT64_MAX : ((int64_t)1 << (t->bits - 1)) - 1;
        return v->i <= lim && v->i >= -lim - 1;
    }
    return v->i >= 0 && (t->bits == 64 || v->i < ((int64_t)1 << t->bits));
}

/* Stores value v converted to scalar type t (as NumPy casts) in slot. */
static void
store_scalar(const ScalarVal *v, const KlType *t, KlSlot *slot)
{
    double re = v->rank >= 2 ? v->re
                : v->is_unsigned == 1 ? (double)v->u : (double)v->i;
    uint64_t bits = v->is_unsigned == 1 ? v->u : (uint64_t)v->i;
    memset(slot, 0, sizeof(KlSlot));
    switch (t->kind) {
    case KL_T_BOOL:
        slot->b = v->rank >= 2 ? (v->re != 0.0 || v->im != 0.0) : bits != 0;
        break;
    case KL_T_INT:
        switch (t->bits) {
        case 8: slot->u8 = (uint8_t)bits; break;
        case 16: slot->u16 = (uint16_t)bits; break;
        case 32: slot->u32 = (uint32_t)bits; break;
        default: slot->u64 = bits; break;
        }
        break;
    case KL_T_FLOAT:
        if (t->bits == 32) {
            slot->f32 = (float)re;
        }
        else {
            slot->f64 = re;
        }
        break;
    default:
        if (t->bits == 64) {
            slot->c64[0] = (float)re;
            slot->c64[1] = (float)v->im;
        }
        else {
            slot->c128[0] = re;
            slot->c128[1] = v->im;
        }
        break;
    }
}

/* Types scalar argument o for parameter i and unboxes it into slot. */
static const KlType *
type_scalar(KlDispatcher *self, int i, PyObject *o, KlSlot *slot)
{
    const KlParamSpec *sp = &self->specs[i];
    ScalarVal v;
    int r = scalar_value(o, &v);
    if (r < 0) {
        return NULL;
    }
    if (r == 0) {
        if (sp->kind == KL_SPEC_ANY) {
            PyErr_Format(PyExc_TypeError,
                         "%U() argument '%U': kiln cannot pass %s to compiled "
                         "code (expected a number or a NumPy array)",
                         func_name(self), param_name(self, i),
                         o == Py_None ? "None" : Py_TYPE(o)->tp_name);
            return NULL;
        }
        return bad_arg(self, i, o, NULL);
    }
    const KlType *t = v.own;
    if (sp->kind == KL_SPEC_SCALAR) {
        t = sp->type;
        int want = type_rank(t);
        if (v.rank > want || (want == 0 && v.rank != 0)) {
            return bad_arg(self, i, o, NULL);
        }
    }
    if (v.pyint != NULL && t->kind == KL_T_INT && !pyint_fits(&v, t)) {
        PyErr_Format(PyExc_OverflowError,
                     "%U() argument '%U': Python integer %S out of bounds "
                     "for %s", func_name(self), param_name(self, i), o,
                     t->weak ? "int64" : t->name);
        return NULL;
    }
    store_scalar(&v, t, slot);
    return t;
}

/* Whether o is a kiln.vulkan.DeviceArray. */
static inline int
is_device_array(PyObject *o)
{
    return kl_DeviceArrayType != NULL
           && PyObject_TypeCheck(o, (PyTypeObject *)kl_DeviceArrayType);
}

/* Types DeviceArray o for parameter i as the ndarray over device memory
 * it holds (so exactly like a host ndarray of its dtype and shape, C
 * layout), pointing slot at that memory: vkexec binds it without
 * transfers.  Only Vulkan kernels take one.  The view stays alive while
 * o does, and the caller holds o for the call. */
static const KlType *
type_device_array(KlDispatcher *self, int i, PyObject *o, KlSlot *slot)
{
    if (!self->vulkan) {
        PyErr_Format(PyExc_TypeError,
                     "%U() argument '%U' is a kiln.vulkan.DeviceArray; call "
                     ".copy_to_host() or use target='vulkan'",
                     func_name(self), param_name(self, i));
        return NULL;
    }
    PyObject *view = PyObject_GetAttrString(o, "_device_view");
    if (view == NULL || !PyArray_Check(view)) {
        Py_XDECREF(view);
        PyErr_Clear();
        return unsupported_arg(self, i, "a kiln.vulkan.DeviceArray without "
                               "device memory");
    }
    const KlType *t = type_array(self, i, (PyArrayObject *)view, slot);
    Py_DECREF(view);
    return t;
}

/* Types argument o of parameter i, unboxing it into slot; NULL with an
 * exception set when it does not fit. */
static inline const KlType *
type_arg(KlDispatcher *self, int i, PyObject *o, KlSlot *slot)
{
    if (PyArray_Check(o)) {
        return type_array(self, i, (PyArrayObject *)o, slot);
    }
    if (is_device_array(o)) {
        return type_device_array(self, i, o, slot);
    }
    if (self->specs[i].kind == KL_SPEC_ARRAY) {
        ScalarVal v;
        int r = scalar_value(o, &v);
        if (r < 0) {
            return NULL;
        }
        return bad_arg(self, i, o, r ? (v.own->weak ? Py_TYPE(o)->tp_name
                                        : v.own->name) : NULL);
    }
    return type_scalar(self, i, o, slot);
}

/* ---- specialisations ------------------------------------------------- */

int
kl_llvm_load(void)
{
#ifdef KL_LLVM_LIBRARY
    static void *handle;
    if (handle == NULL) {
        handle = dlopen(KL_LLVM_LIBRARY, RTLD_NOW | RTLD_GLOBAL);
        if (handle == NULL) {
            const char *why = dlerror();
            PyErr_Format(PyExc_ImportError, "kiln: cannot load LLVM: %s",
                         why != NULL ? why : KL_LLVM_LIBRARY);
            return -1;
        }
    }
#endif
    return 0;
}


static inline int
same_key(const KlType **a, const KlType **b, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            return 0;
        }
    }
    return 1;
}

/* Index of the specialisation for key, or -1. */
static inline int32_t
find_key(KlDispatcher *self, const KlType **key)
{
    int32_t n = self->nparams;
    if (self->nentries == 0) {
        return -1;
    }
    if (same_key(self->entries[self->last].key, key, n)) {
        return self->last;
    }
    for (int32_t j = 0; j < self->nentries; j++) {
        if (same_key(self->entries[j].key, key, n)) {
            self->last = j;
            return j;
        }
    }
    return -1;
}

/* The code of that kind for key, or NULL (no exception). */
static inline KlCompiled *
lookup(KlDispatcher *self, const KlType **key, KlCodeKind kind)
{
    int32_t j = find_key(self, key);
    return j < 0 ? NULL : self->entries[j].code[kind];
}

/* The options of code of that kind. */
static KlOptions
code_options(KlDispatcher *self, KlCodeKind kind)
{
    KlOptions opts = self->options;
    opts.noalias = (uint8_t)(kind != KL_CODE_PLAIN);
    opts.stream = (uint8_t)(kind == KL_CODE_STREAM);
    return opts;
}

/* Compiles py_func for key as code of that kind, or loads it from the
 * disk cache (cache=True, CPU), and records it; NULL with an exception
 * set. */
static KlCompiled *
compile_key(KlDispatcher *self, const KlType **key, KlCodeKind kind)
{
    KlDiag d;
    memset(&d, 0, sizeof(d));
    if (kl_llvm_load() < 0) {
        return NULL;
    }
    KlOptions opts = code_options(self, kind);
    int hit = 0;
    KlCompiled *c = self->cache && !self->vulkan
        ? kl_cache_compile(self->py_func, key, self->nparams, self->ret_spec,
                           opts, &hit, &d)
        : kl_compile(self->py_func, key, self->nparams, self->ret_spec, opts,
                     0, &d);
    self->cache_hits += hit;
    if (c == NULL) {
        if (PyErr_Occurred() && d.kind == KL_DIAG_NONE) {
            return NULL;
        }
        PyErr_Clear();
        kl_raise_diag(&d, self->py_func);
        return NULL;
    }
    /* Compilation runs Python code: another thread may have got here. */
    int32_t j = find_key(self, key);
    if (j >= 0) {
        KlCompiled **slot = &self->entries[j].code[kind];
        if (*slot != NULL) {
            kl_compiled_free(c);
        }
        else {
            *slot = c;
        }
        return *slot;
    }
    if (self->nentries == self->capentries) {
        int32_t cap = self->capentries ? self->capentries * 2 : 4;
        KlSpecialisation *p = PyMem_Realloc(self->entries,
                                            sizeof(*p) * (size_t)cap);
        if (p == NULL) {
            kl_compiled_free(c);
            PyErr_NoMemory();
            return NULL;
        }
        self->entries = p;
        self->capentries = cap;
    }
    size_t ksize = sizeof(KlType *) * (size_t)(self->nparams + 1);
    const KlType **kcopy = PyMem_Malloc(ksize);
    if (kcopy == NULL) {
        kl_compiled_free(c);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(kcopy, key, sizeof(KlType *) * (size_t)self->nparams);
    self->entries[self->nentries] = (KlSpecialisation){.key = kcopy};
    self->entries[self->nentries].code[kind] = c;
    self->last = self->nentries++;
    return c;
}

void
kl_dispatch_clear_entries(KlDispatcher *self)
{
    for (int32_t j = 0; j < self->nentries; j++) {
        PyMem_Free((void *)self->entries[j].key);
        for (int k = 0; k < KL_CODE__COUNT; k++) {
            kl_compiled_free(self->entries[j].code[k]);
        }
        kl_compiled_free(self->entries[j].texts);
    }
    PyMem_Free(self->entries);
    self->entries = NULL;
    self->nentries = self->capentries = 0;
    self->last = 0;
}

const KlCompiled *
kl_entry_code(const KlSpecialisation *e)
{
    for (int k = 0; k < KL_CODE__COUNT; k++) {
        if (e->code[k] != NULL) {
            return e->code[k];
        }
    }
    return e->texts;
}

KlOptions
kl_entry_options(KlDispatcher *self, const KlSpecialisation *e)
{
    int kind = KL_CODE__COUNT - 1;
    while (kind > KL_CODE_PLAIN && e->code[kind] == NULL) {
        kind--;
    }
    return code_options(self, kind);
}

/* How parameter i's type t reads in a signature: C layout shown as any
 * layout when that is what the annotation asked for. */
static const KlType *
shown_type(KlDispatcher *self, int32_t i, const KlType *t)
{
    const KlParamSpec *sp = &self->specs[i];
    if (t->kind == KL_T_ARRAY && t->layout == KL_LAYOUT_C
        && sp->kind == KL_SPEC_ARRAY && sp->layout == KL_LAYOUT_ANY) {
        const KlType *any = kl_type_array(t->elem, t->ndim, KL_LAYOUT_ANY,
                                          t->readonly);
        return any != NULL ? any : t;
    }
    return t;
}

PyObject *
kl_signature_str(KlDispatcher *self, const KlSpecialisation *e)
{
    size_t size = 16 + 64 * (size_t)(self->nparams + 1);
    char *buf = PyMem_Malloc(size);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    size_t n = 0;
    buf[n++] = '(';
    for (int32_t i = 0; i < self->nparams; i++) {
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "",
                              shown_type(self, i, e->key[i])->name);
    }
    const KlCompiled *c = kl_entry_code(e);
    const KlType *rt = c->ret_type;
    snprintf(buf + n, size - n, ") -> %s", rt != NULL ? rt->name : "none");
    PyObject *s = PyUnicode_FromString(buf);
    PyMem_Free(buf);
    return s;
}

/* ---- errors ---------------------------------------------------------- */

/* Raises kiln.CompileError "file:line: msg\n    <source line>". */
static void
raise_compile_error(const KlDiag *d, PyObject *py_func)
{
    PyObject *file = NULL, *msg = NULL, *text = NULL, *exc = NULL;
    PyObject *lineno = NULL, *src = NULL;
    if (d->file[0] != '\0') {
        file = PyUnicode_DecodeFSDefault(d->file);
    }
    else {
        PyCodeObject *code =
            (PyCodeObject *)((PyFunctionObject *)py_func)->func_code;
        file = Py_NewRef(code->co_filename);
    }
    msg = PyUnicode_DecodeUTF8(d->msg, (Py_ssize_t)strlen(d->msg), "replace");
    if (file == NULL || msg == NULL) {
        goto done;
    }
    if (d->line > 0) {
        PyObject *linecache = PyImport_ImportModule("linecache");
        if (linecache != NULL) {
            src = PyObject_CallMethod(linecache, "getline", "Oi", file,
                                      d->line);
            Py_DECREF(linecache);
        }
        PyObject *stripped = src != NULL && PyUnicode_Check(src)
            ? PyObject_CallMethod(src, "strip", NULL) : NULL;
        Py_XSETREF(src, stripped);
        PyErr_Clear();
        if (src != NULL && PyUnicode_GET_LENGTH(src) > 0) {
            text = PyUnicode_FromFormat("%U:%d: %U\n    %U", file, d->line,
                                        msg, src);
        }
        else {
            text = PyUnicode_FromFormat("%U:%d: %U", file, d->line, msg);
        }
        lineno = PyLong_FromLong(d->line);
    }
    else {
        text = PyUnicode_FromFormat("%U: %U", file, msg);
        lineno = Py_NewRef(Py_None);
    }
    if (text == NULL || lineno == NULL) {
        goto done;
    }
    exc = PyObject_CallOneArg(kl_CompileError, text);
    if (exc == NULL || PyObject_SetAttrString(exc, "filename", file) < 0
        || PyObject_SetAttrString(exc, "lineno", lineno) < 0) {
        goto done;
    }
    PyErr_SetObject(kl_CompileError, exc);
done:
    Py_XDECREF(file);
    Py_XDECREF(msg);
    Py_XDECREF(text);
    Py_XDECREF(exc);
    Py_XDECREF(lineno);
    Py_XDECREF(src);
}

void
kl_raise_diag(const KlDiag *d, PyObject *py_func)
{
    switch (d->kind) {
    case KL_DIAG_COMPILE:
        raise_compile_error(d, py_func);
        break;
    case KL_DIAG_TYPE:
        PyErr_SetString(PyExc_TypeError, d->msg);
        break;
    case KL_DIAG_VALUE:
        PyErr_SetString(PyExc_ValueError, d->msg);
        break;
    case KL_DIAG_RUNTIME:
        PyErr_SetString(PyExc_RuntimeError, d->msg);
        break;
    case KL_DIAG_NOMEM:
        PyErr_NoMemory();
        break;
    default:
        PyErr_Format(PyExc_SystemError, "kiln internal error: %s",
                     d->kind == KL_DIAG_NONE ? "no diagnostic" : d->msg);
        break;
    }
}

/* Formats a raise-site message: "%lld" takes the next payload, "%%" is a
 * percent sign; anything else is copied as it is. */
static PyObject *
format_raise(const char *fmt, const int64_t payload[3])
{
    size_t len = strlen(fmt);
    char *buf = PyMem_Malloc(len + 3 * 24 + 1);
    if (buf == NULL) {
        return PyErr_NoMemory();
    }
    size_t n = 0;
    int k = 0;
    for (size_t i = 0; i < len; i++) {
        if (fmt[i] == '%' && fmt[i + 1] == '%') {
            buf[n++] = '%';
            i++;
        }
        else if (fmt[i] == '%' && strncmp(fmt + i + 1, "lld", 3) == 0
                 && k < 3) {
            n += (size_t)sprintf(buf + n, "%lld", (long long)payload[k++]);
            i += 3;
        }
        else {
            buf[n++] = fmt[i];
        }
    }
    PyObject *s = PyUnicode_DecodeUTF8(buf, (Py_ssize_t)n, "replace");
    PyMem_Free(buf);
    return s;
}

/* Raises the exception a kernel reported through st; returns NULL. */
static PyObject *
raise_status(const KlCompiled *c, const KlStatus *st)
{
    if (st->site < 0 || st->site >= c->nraises) {
        PyErr_Format(PyExc_SystemError,
                     "kiln internal error: kernel raised unknown site %d",
                     (int)st->site);
        return NULL;
    }
    const KlRaiseSite *s = &c->raises[st->site];
    PyObject *cls;
    switch (s->kind) {
    case KL_EXC_INDEX: cls = PyExc_IndexError; break;
    case KL_EXC_ZERODIV: cls = PyExc_ZeroDivisionError; break;
    case KL_EXC_VALUE: cls = PyExc_ValueError; break;
    case KL_EXC_OVERFLOW: cls = PyExc_OverflowError; break;
    case KL_EXC_ASSERTION: cls = PyExc_AssertionError; break;
    default: cls = (PyObject *)s->exc_class; break;
    }
    if (cls == NULL || !PyExceptionClass_Check(cls)) {
        PyErr_SetString(PyExc_SystemError,
                        "kiln internal error: raise site without a class");
        return NULL;
    }
    if (s->msg == NULL || s->msg[0] == '\0') {
        PyErr_SetNone(cls);
        return NULL;
    }
    PyObject *msg = format_raise(s->msg, st->payload);
    if (msg != NULL) {
        PyErr_SetObject(cls, msg);
        Py_DECREF(msg);
    }
    return NULL;
}

/* ---- boxing and the call --------------------------------------------- */

/* The Python object for a result of type t stored at p. */
static PyObject *
box(const KlType *t, const void *p)
{
    if (t == NULL || t->kind == KL_T_NONE || t->kind == KL_T_VOID) {
        Py_RETURN_NONE;
    }
    if (t == kl_pybool) {
        return PyBool_FromLong(*(const uint8_t *)p != 0);
    }
    if (t->weak) {
        switch (t->kind) {
        case KL_T_INT:
            return PyLong_FromLongLong(*(const int64_t *)p);
        case KL_T_FLOAT:
            return PyFloat_FromDouble(*(const double *)p);
        default: {
            const double *c = p;
            return PyComplex_FromDoubles(c[0], c[1]);
        }
        }
    }
    int e = elem_index(t);
    if (e < 0) {
        PyErr_Format(PyExc_SystemError,
                     "kiln internal error: cannot return a %s", t->name);
        return NULL;
    }
    return PyArray_Scalar((void *)p, elem_descrs[e], NULL);
}

/* Whether thread state ts is the only one in the only interpreter: then
 * no Python thread can be waiting for the GIL, and releasing it around a
 * call (four mutex operations, most of a short call's cost) gains nothing.
 * A thread that appears meanwhile (only a foreign C thread can, as
 * creating a Python thread needs the GIL) waits until the call returns. */
static inline int
only_thread(PyThreadState *ts)
{
    PyInterpreterState *interp = PyThreadState_GetInterpreter(ts);
    return PyInterpreterState_Next(PyInterpreterState_Head()) == NULL
           && PyInterpreterState_ThreadHead(interp) == ts
           && PyThreadState_Next(ts) == NULL;
}

/* Runs compiled code on unboxed arguments, with the GIL released whenever
 * another thread could use it. */
static PyObject *
run(const KlCompiled *c, void **argv)
{
    KlStatus st;
    union {
        char bytes[32];
        double d[4];
        int64_t i[4];
    } ret;
    int32_t rc;
    KlEntry entry = c->entry;
    PyThreadState *ts = PyThreadState_Get();
    if (c->vk_serial != NULL || c->vk_steps != NULL) {
        KlDiag d;
        memset(&d, 0, sizeof(d));
        ts = PyEval_SaveThread();
        rc = c->vk_serial != NULL
             ? kl_vk_serial(c->vk_serial, argv, &ret, &st, &d)
             : kl_vk_steps_run(c->vk_steps, argv, &ret, &st, &d);
        PyEval_RestoreThread(ts);
        if (rc < 0) {
            if (d.kind == KL_DIAG_NOMEM) {
                return PyErr_NoMemory();
            }
            PyErr_Format(d.kind == KL_DIAG_VALUE ? PyExc_ValueError
                         : PyExc_RuntimeError, "kiln: %s", d.msg);
            return NULL;
        }
    }
    else if (only_thread(ts)) {
        rc = entry(argv, &ret, &st);
    }
    else {
        ts = PyEval_SaveThread();
        rc = entry(argv, &ret, &st);
        PyEval_RestoreThread(ts);
    }
    if (rc == 0) {
        return box(c->ret_type, &ret);
    }
    if (rc == 1) {
        return raise_status(c, &st);
    }
    PyErr_Format(PyExc_SystemError, "kiln internal error: status %d",
                 (int)rc);
    return NULL;
}

/* The bytes [*lo, *hi] array argument x of type t spans; 0 when it is
 * empty (it then overlaps nothing). */
static int
array_span(const KlArrayArg *x, const KlType *t, uintptr_t *lo, uintptr_t *hi)
{
    intptr_t first = 0, last = 0;
    for (int k = 0; k < t->ndim; k++) {
        if (x->shape[k] == 0) {
            return 0;
        }
        intptr_t reach = (intptr_t)(x->shape[k] - 1) * (intptr_t)x->strides[k];
        if (reach < 0) {
            first += reach;
        }
        else {
            last += reach;
        }
    }
    *lo = (uintptr_t)x->data + (uintptr_t)first;
    *hi = (uintptr_t)x->data + (uintptr_t)last
          + (uintptr_t)kl_type_itemsize(t->elem) - 1;
    return 1;
}

/* Whether the call's arguments (types key, unboxed in slots) include an
 * array and no two of them share a byte of memory.  Calls with more than
 * KL_SPAN_ARRAYS arrays take the plain build. */
#define KL_SPAN_ARRAYS 8

static int
arrays_disjoint(const KlType **key, const KlSlot *slots, int32_t n)
{
    uintptr_t lo[KL_SPAN_ARRAYS], hi[KL_SPAN_ARRAYS];
    int narrays = 0, m = 0;
    for (int32_t i = 0; i < n; i++) {
        if (key[i]->kind != KL_T_ARRAY) {
            continue;
        }
        if (++narrays > KL_SPAN_ARRAYS) {
            return 0;
        }
        m += array_span(&slots[i].arr, key[i], &lo[m], &hi[m]);
    }
    if (narrays < 1) {
        return 0;
    }
    for (int i = 0; i < m; i++) {
        for (int j = i + 1; j < m; j++) {
            if (lo[i] <= hi[j] && lo[j] <= hi[i]) {
                return 0;
            }
        }
    }
    return 1;
}

/* Is one of the arrays (bit k: argument k) at least KL_STREAM_BYTES?  Only
 * then do streaming stores pay: smaller arrays may still be in a cache
 * when the code that reads them next runs. */
static int
streams_large(uint64_t arrays, const KlType **key, const KlSlot *slots,
              int32_t n)
{
    for (int32_t i = 0; i < n && i < 64; i++) {
        if (!(arrays >> i & 1) || key[i]->kind != KL_T_ARRAY) {
            continue;
        }
        int64_t bytes = kl_type_itemsize(key[i]->elem);
        for (int k = 0; k < key[i]->ndim; k++) {
            bytes *= slots[i].arr.shape[k];     /* an array's size: fits */
        }
        if (bytes >= KL_STREAM_BYTES) {
            return 1;
        }
    }
    return 0;
}

/* Calls self on exactly nparams positional arguments, using the given
 * buffers of nparams items. */
static PyObject *
call_with(KlDispatcher *self, PyObject *const *args, KlSlot *slots,
          void **argv, const KlType **key)
{
    int32_t n = self->nparams;
    for (int32_t i = 0; i < n; i++) {
        key[i] = type_arg(self, i, args[i], &slots[i]);
        if (key[i] == NULL) {
            return NULL;
        }
        argv[i] = &slots[i];
    }
    KlCodeKind kind = arrays_disjoint(key, slots, n) ? KL_CODE_NOALIAS
                                                     : KL_CODE_PLAIN;
    KlCompiled *c = lookup(self, key, kind);
    if (c == NULL && (c = compile_key(self, key, kind)) == NULL) {
        return NULL;
    }
    if (kind == KL_CODE_NOALIAS && c->stream_arrays != 0
        && streams_large(c->stream_arrays, key, slots, n)) {
        kind = KL_CODE_STREAM;
        c = lookup(self, key, kind);
        if (c == NULL && (c = compile_key(self, key, kind)) == NULL) {
            return NULL;
        }
    }
    return run(c, argv);
}

/* As call_with, choosing stack or heap buffers. */
static PyObject *
call_bound(KlDispatcher *self, PyObject *const *args)
{
    int32_t n = self->nparams;
    if (n <= KL_FAST_ARGS) {
        KlSlot slots[KL_FAST_ARGS];
        void *argv[KL_FAST_ARGS];
        const KlType *key[KL_FAST_ARGS];
        return call_with(self, args, slots, argv, key);
    }
    KlSlot *slots = PyMem_Malloc(sizeof(KlSlot) * (size_t)n);
    void **argv = PyMem_Malloc(sizeof(void *) * (size_t)n);
    const KlType **key = PyMem_Malloc(sizeof(KlType *) * (size_t)n);
    PyObject *r = NULL;
    if (slots == NULL || argv == NULL || key == NULL) {
        PyErr_NoMemory();
    }
    else {
        r = call_with(self, args, slots, argv, key);
    }
    PyMem_Free(slots);
    PyMem_Free(argv);
    PyMem_Free((void *)key);
    return r;
}

/* For a function with *args, **kwargs or keyword-only parameters, which
 * kiln does not compile: raises the frontend's CompileError (placeholder
 * types suffice, as the frontend refuses the signature itself) and
 * returns 1; returns 0 for other functions. */
static int
signature_unsupported(KlDispatcher *self)
{
    PyCodeObject *code =
        (PyCodeObject *)((PyFunctionObject *)self->py_func)->func_code;
    if (!(code->co_flags & (CO_VARARGS | CO_VARKEYWORDS))
        && code->co_kwonlyargcount == 0) {
        return 0;
    }
    const KlType *fixed[KL_FAST_ARGS];
    int32_t n = self->nparams < KL_FAST_ARGS ? self->nparams : KL_FAST_ARGS;
    for (int32_t i = 0; i < n; i++) {
        fixed[i] = kl_pyint;
    }
    KlDiag d;
    memset(&d, 0, sizeof(d));
    if (kl_llvm_load() < 0) {
        return 1;
    }
    KlCompiled *c = kl_compile(self->py_func, fixed, n, self->ret_spec,
                               self->options, 0, &d);
    if (c != NULL) {
        kl_compiled_free(c);
        return 0;
    }
    PyErr_Clear();
    kl_raise_diag(&d, self->py_func);
    return 1;
}

/* Binds positional and keyword arguments and defaults to parameters as
 * CPython would, then calls. */
static PyObject *
call_slow(KlDispatcher *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    int32_t n = self->nparams;
    if (nargs > n) {
        if (signature_unsupported(self)) {
            return NULL;
        }
        PyErr_Format(PyExc_TypeError,
                     "%U() takes %d positional argument%s but %zd %s given",
                     func_name(self), (int)n, n == 1 ? "" : "s", nargs,
                     nargs == 1 ? "was" : "were");
        return NULL;
    }
    PyObject **bound = PyMem_Calloc((size_t)n + 1, sizeof(PyObject *));
    if (bound == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *r = NULL;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        bound[i] = args[i];
    }
    Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, k);
        int32_t j = 0;
        while (j < n && PyUnicode_Compare(param_name(self, j), kw) != 0) {
            j++;
        }
        if (j == n) {
            if (signature_unsupported(self)) {
                goto done;
            }
            PyErr_Format(PyExc_TypeError,
                         "%U() got an unexpected keyword argument '%U'",
                         func_name(self), kw);
            goto done;
        }
        if (bound[j] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%U() got multiple values for argument '%U'",
                         func_name(self), kw);
            goto done;
        }
        bound[j] = args[nargs + k];
    }
    PyObject *defaults = ((PyFunctionObject *)self->py_func)->func_defaults;
    Py_ssize_t nd = defaults != NULL ? PyTuple_GET_SIZE(defaults) : 0;
    for (int32_t j = 0; j < n; j++) {
        if (bound[j] != NULL) {
            continue;
        }
        if (j >= n - nd) {
            bound[j] = PyTuple_GET_ITEM(defaults, j - (n - nd));
            continue;
        }
        if (signature_unsupported(self)) {
            goto done;
        }
        PyErr_Format(PyExc_TypeError,
                     "%U() missing required argument '%U'",
                     func_name(self), param_name(self, j));
        goto done;
    }
    r = call_bound(self, bound);
done:
    PyMem_Free(bound);
    return r;
}

/* Initialises the Vulkan runtime for a first Vulkan call; -1 with
 * RuntimeError naming why when there is no device. */
static int
vulkan_start(void)
{
    KlDiag d;
    memset(&d, 0, sizeof(d));
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = kl_vk_init(&d);
    Py_END_ALLOW_THREADS
    if (r < 0) {
        PyErr_Format(PyExc_RuntimeError,
                     "kiln: no Vulkan device is available: %s", d.msg);
        return -1;
    }
    return 0;
}

PyObject *
kl_dispatch_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                       PyObject *kwnames)
{
    KlDispatcher *self = (KlDispatcher *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (!numpy_ready && numpy_init() < 0) {
        return NULL;
    }
    if (self->py_func == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "kiln: dispatcher already cleared");
        return NULL;
    }
    if (self->vulkan && !kl_vk_ready() && vulkan_start() < 0) {
        return NULL;
    }
    if (kwnames != NULL || nargs != self->nparams) {
        return call_slow(self, args, nargs, kwnames);
    }
    return call_bound(self, args);
}
