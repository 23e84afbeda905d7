/* dispatch.h: the dispatcher object behind every @kiln.jit function.
 *
 * module.c owns the Python type (construction, attributes, inspect_*);
 * dispatch.c owns the call path: typing each argument against its
 * parameter spec, finding or compiling the specialisation for the
 * resulting type signature, unboxing, running the compiled entry with the
 * GIL released, boxing the result and turning a kernel's raise into a
 * Python exception.  Both run with the GIL held.
 */
#ifndef KILN_DISPATCH_H
#define KILN_DISPATCH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "compile.h"

/* What a parameter's annotation asks of its argument. */
typedef enum KlSpecKind {
    KL_SPEC_ANY,        /* no annotation: the argument's own type */
    KL_SPEC_SCALAR,     /* a scalar of `type` (weak or strong) */
    KL_SPEC_ARRAY,      /* an array of element `type` */
} KlSpecKind;

typedef struct KlParamSpec {
    KlSpecKind kind;        /* see KlSpecKind */
    const KlType *type;     /* SCALAR: the type; ARRAY: the element type */
    int ndim;               /* ARRAY: dimensions, -1 when taken from the call */
    int layout;             /* ARRAY: KlLayout, -1 when taken from the call */
} KlParamSpec;

/* The codes of one specialisation, each compiled on its first call. */
typedef enum KlCodeKind {
    KL_CODE_PLAIN,          /* for calls whose arrays may overlap */
    KL_CODE_NOALIAS,        /* KlOptions.noalias: no two arrays overlap */
    KL_CODE_STREAM,         /* KlOptions.stream too: and an array the code
                               only writes is large (dispatch.c) */
    KL_CODE__COUNT
} KlCodeKind;

/* One compiled specialisation. */
typedef struct KlSpecialisation {
    const KlType **key;     /* the argument types (interned; malloc'ed) */
    KlCompiled *code[KL_CODE__COUNT];   /* by KlCodeKind, or NULL */
    KlCompiled *texts;      /* a recompilation keeping the texts, or NULL */
} KlSpecialisation;

typedef struct KlDispatcher {
    PyObject_HEAD
    vectorcallfunc vectorcall;  /* dispatch.c's kl_dispatch_vectorcall */
    PyObject *py_func;          /* the Python function */
    PyObject *names;            /* tuple of parameter names */
    PyObject *dict;             /* __dict__ (__name__, __doc__, ...) */
    PyObject *weakrefs;         /* weak reference list */
    int32_t nparams;            /* positional parameters */
    KlParamSpec *specs;         /* nparams specs (PyMem) */
    const KlType *ret_spec;     /* return annotation, NULL when inferred */
    KlOptions options;          /* fastmath, boundscheck */
    int vulkan;                 /* target="vulkan" (not available yet) */
    int cache;                  /* cache=True: CPU code kept on disk
                                   (cache.h) */
    Py_ssize_t cache_hits;      /* specialisations loaded from disk */
    KlSpecialisation *entries;  /* compiled specialisations (PyMem) */
    int32_t nentries, capentries;
    int32_t last;               /* entry hit most recently */
} KlDispatcher;

/* kiln.CompileError (created by module.c at import). */
extern PyObject *kl_CompileError;
/* kiln.vulkan.DeviceArray (registered by kiln.vulkan at import; NULL
 * until then).  Its attribute `_device_view` is an ndarray over device
 * memory (vkexec.h: kl_vk_devmem_*) whose elements are never read on the
 * host: the dispatcher types the argument as that ndarray. */
extern PyObject *kl_DeviceArrayType;

/* Parses one parameter spec object (see python/kiln/_types.py) into *out;
 * -1 with TypeError/ValueError set when malformed. */
int kl_spec_parse(PyObject *obj, KlParamSpec *out);
/* Parses a return spec: NULL result with *ok = 1 for None (inferred). */
const KlType *kl_ret_spec_parse(PyObject *obj, int *ok);

/* The call path (tp_vectorcall of the dispatcher type). */
PyObject *kl_dispatch_vectorcall(PyObject *self, PyObject *const *args,
                                 size_t nargsf, PyObject *kwnames);

/* Makes LLVM's symbols available before the first compilation (the
 * extension binds them lazily; see setup.py); -1 with ImportError set
 * when the library cannot be loaded.  Cheap after the first call. */
int kl_llvm_load(void);

/* Sets the Python exception for a failed compilation of py_func. */
void kl_raise_diag(const KlDiag *d, PyObject *py_func);

/* Frees every specialisation's bookkeeping (compiled code stays mapped). */
void kl_dispatch_clear_entries(KlDispatcher *self);

/* Some code of entry e (its texts when it has no other), for what every
 * code of it shares: the return type, the Vulkan kernels. */
const KlCompiled *kl_entry_code(const KlSpecialisation *e);

/* The options entry e's texts are compiled with: those of the most
 * specialised code its calls ran (noalias when its arrays did not
 * overlap; stream when an array it only writes was large too). */
KlOptions kl_entry_options(KlDispatcher *self, const KlSpecialisation *e);

/* "(float64, float32[:]) -> none" for an entry, each array shown with the
 * layout of its annotation (a `f32[:]` called with a C-contiguous array
 * runs a C-layout specialisation but reads `float32[:]`); new reference. */
PyObject *kl_signature_str(KlDispatcher *self, const KlSpecialisation *e);

#endif /* KILN_DISPATCH_H */
