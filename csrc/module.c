/* module.c: the kiln._core extension module.
 *
 * Defines kiln.CompileError and the Dispatcher type that kiln.jit builds
 * for every decorated function: its construction from the specs computed
 * by python/kiln/_types.py, its attributes (py_func, signatures, __dict__
 * for __name__/__doc__/__wrapped__) and the inspect_* methods.  Calls go
 * through dispatch.c.  Importing the module builds the type singletons and
 * nothing else: NumPy is loaded on the first call and LLVM on the first
 * compilation.
 */
#include "dispatch.h"
#include "runtime/pool.h"

#include <stddef.h>
#include <string.h>

/* ---- construction and lifetime --------------------------------------- */

/* Dispatcher(py_func, names, specs, ret_spec, (target, fastmath,
 *            boundscheck, cache)) */
static PyObject *
Dispatcher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *func, *names, *specs, *ret;
    const char *target;
    int fastmath, boundscheck, cache;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError,
                        "Dispatcher() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!O!O!O(sppp):Dispatcher", &PyFunction_Type,
                          &func, &PyTuple_Type, &names, &PyTuple_Type, &specs,
                          &ret, &target, &fastmath, &boundscheck, &cache)) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (PyTuple_GET_SIZE(specs) != n || n > INT32_MAX / 2) {
        PyErr_SetString(PyExc_ValueError,
                        "Dispatcher(): names and specs differ in length");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(names, i))) {
            PyErr_SetString(PyExc_TypeError,
                            "Dispatcher(): parameter names must be str");
            return NULL;
        }
    }
    int vulkan = strcmp(target, "vulkan") == 0;
    if (!vulkan && strcmp(target, "cpu") != 0) {
        PyErr_Format(PyExc_ValueError, "kiln: unknown target '%s'", target);
        return NULL;
    }
    int ok;
    const KlType *ret_spec = kl_ret_spec_parse(ret, &ok);
    if (!ok) {
        return NULL;
    }
    KlDispatcher *self = (KlDispatcher *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = kl_dispatch_vectorcall;
    self->py_func = Py_NewRef(func);
    self->names = Py_NewRef(names);
    self->nparams = (int32_t)n;
    self->ret_spec = ret_spec;
    self->options.fastmath = (uint8_t)fastmath;
    self->options.boundscheck = (uint8_t)boundscheck;
    self->vulkan = vulkan;
    self->cache = cache;
    self->specs = PyMem_Calloc((size_t)n + 1, sizeof(KlParamSpec));
    if (self->specs == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (kl_spec_parse(PyTuple_GET_ITEM(specs, i), &self->specs[i]) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    return (PyObject *)self;
}

static int
Dispatcher_traverse(KlDispatcher *self, visitproc visit, void *arg)
{
    Py_VISIT(self->py_func);
    Py_VISIT(self->names);
    Py_VISIT(self->dict);
    for (int32_t j = 0; j < self->nentries; j++) {
        KlCompiled *cs[2] = {self->entries[j].compiled,
                             self->entries[j].texts};
        for (int k = 0; k < 2; k++) {
            for (int32_t r = 0; cs[k] != NULL && r < cs[k]->nraises; r++) {
                Py_VISIT((PyObject *)cs[k]->raises[r].exc_class);
            }
        }
    }
    return 0;
}

static int
Dispatcher_clear(KlDispatcher *self)
{
    Py_CLEAR(self->py_func);
    Py_CLEAR(self->names);
    Py_CLEAR(self->dict);
    kl_dispatch_clear_entries(self);
    return 0;
}

static void
Dispatcher_dealloc(KlDispatcher *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    Dispatcher_clear(self);
    PyMem_Free(self->specs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Dispatcher_repr(KlDispatcher *self)
{
    if (self->py_func == NULL) {
        return PyUnicode_FromString("<kiln dispatcher>");
    }
    return PyUnicode_FromFormat(
        "<kiln dispatcher %U>",
        ((PyFunctionObject *)self->py_func)->func_qualname);
}

/* ---- attributes ------------------------------------------------------- */

static PyObject *
Dispatcher_get_signatures(KlDispatcher *self, void *closure)
{
    (void)closure;
    PyObject *list = PyList_New(self->nentries);
    if (list == NULL) {
        return NULL;
    }
    for (int32_t j = 0; j < self->nentries; j++) {
        PyObject *s = kl_signature_str(self, &self->entries[j]);
        if (s == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, j, s);
    }
    return list;
}

static PyObject *
Dispatcher_get_target(KlDispatcher *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(self->vulkan ? "vulkan" : "cpu");
}

static PyObject *
Dispatcher_get_py_func(KlDispatcher *self, void *closure)
{
    (void)closure;
    if (self->py_func == NULL) {
        PyErr_SetString(PyExc_AttributeError, "py_func");
        return NULL;
    }
    return Py_NewRef(self->py_func);
}

static PyGetSetDef Dispatcher_getset[] = {
    {"py_func", (getter)Dispatcher_get_py_func, NULL,
     "The original Python function.", NULL},
    {"signatures", (getter)Dispatcher_get_signatures, NULL,
     "The compiled signatures, e.g. '(float64, float32[:]) -> none'.", NULL},
    {"target", (getter)Dispatcher_get_target, NULL,
     "The target this dispatcher compiles for.", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* ---- inspect_* -------------------------------------------------------- */

enum { TEXT_IR, TEXT_LLVM, TEXT_ASM };

/* Index of the specialisation `sig` names (None: the first); -1 with
 * ValueError when there is none. */
static int32_t
find_entry(KlDispatcher *self, PyObject *sig)
{
    PyObject *name = ((PyFunctionObject *)self->py_func)->func_name;
    if (self->nentries == 0) {
        PyErr_Format(PyExc_ValueError,
                     "kiln: %U() has no compiled signature yet (call it "
                     "first)", name);
        return -1;
    }
    if (sig == Py_None) {
        return 0;
    }
    if (!PyUnicode_Check(sig)) {
        PyErr_Format(PyExc_TypeError,
                     "kiln: signature must be a str, got %.80s",
                     Py_TYPE(sig)->tp_name);
        return -1;
    }
    for (int32_t j = 0; j < self->nentries; j++) {
        PyObject *s = kl_signature_str(self, &self->entries[j]);
        if (s == NULL) {
            return -1;
        }
        int eq = PyUnicode_Compare(s, sig) == 0;
        Py_DECREF(s);
        if (eq) {
            return j;
        }
    }
    PyObject *all = Dispatcher_get_signatures(self, NULL);
    if (all != NULL) {
        PyErr_Format(PyExc_ValueError,
                     "kiln: %U() has no compiled signature %R (compiled: %R)",
                     name, sig, all);
        Py_DECREF(all);
    }
    return -1;
}

/* Text `which` of the specialisation `sig` names, recompiled once with its
 * texts kept. */
static PyObject *
inspect_text(KlDispatcher *self, PyObject *args, PyObject *kwds, int which)
{
    static char *kwlist[] = {"signature", NULL};
    PyObject *sig = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:inspect", kwlist, &sig)) {
        return NULL;
    }
    if (self->vulkan) {
        PyErr_SetString(PyExc_RuntimeError,
                        "kiln: the Vulkan target is not available yet");
        return NULL;
    }
    int32_t j = find_entry(self, sig);
    if (j < 0) {
        return NULL;
    }
    if (self->entries[j].texts == NULL) {
        KlDiag d;
        memset(&d, 0, sizeof(d));
        if (kl_llvm_load() < 0) {
            return NULL;
        }
        KlCompiled *c = kl_compile(self->py_func, self->entries[j].key,
                                   self->nparams, self->ret_spec,
                                   self->options, 1, &d);
        if (c == NULL) {
            PyErr_Clear();
            kl_raise_diag(&d, self->py_func);
            return NULL;
        }
        /* compiling ran Python code: the table may have moved */
        if (j >= self->nentries || self->entries[j].texts != NULL) {
            kl_compiled_free(c);
        }
        else {
            self->entries[j].texts = c;
        }
        if (j >= self->nentries) {
            PyErr_SetString(PyExc_RuntimeError,
                            "kiln: specialisations changed during inspect");
            return NULL;
        }
    }
    const KlCompiled *t = self->entries[j].texts;
    const char *text = which == TEXT_IR ? t->ir_text
                       : which == TEXT_LLVM ? t->text.llvm_ir
                       : t->text.asm_text;
    if (text == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "kiln: this text is not available for the signature");
        return NULL;
    }
    return PyUnicode_DecodeUTF8(text, (Py_ssize_t)strlen(text), "replace");
}

static PyObject *
Dispatcher_inspect_ir(KlDispatcher *self, PyObject *args, PyObject *kwds)
{
    return inspect_text(self, args, kwds, TEXT_IR);
}

static PyObject *
Dispatcher_inspect_llvm(KlDispatcher *self, PyObject *args, PyObject *kwds)
{
    return inspect_text(self, args, kwds, TEXT_LLVM);
}

static PyObject *
Dispatcher_inspect_asm(KlDispatcher *self, PyObject *args, PyObject *kwds)
{
    return inspect_text(self, args, kwds, TEXT_ASM);
}

static PyObject *
Dispatcher_inspect_spirv(KlDispatcher *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"signature", NULL};
    PyObject *sig = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:inspect_spirv", kwlist,
                                     &sig)) {
        return NULL;
    }
    if (self->vulkan) {
        PyErr_SetString(PyExc_RuntimeError,
                        "kiln: the Vulkan target is not available yet");
    }
    else {
        PyErr_SetString(PyExc_ValueError,
                        "kiln: inspect_spirv() needs a dispatcher built with "
                        "target='vulkan'");
    }
    return NULL;
}

static PyMethodDef Dispatcher_methods[] = {
    {"inspect_ir", (PyCFunction)(void (*)(void))Dispatcher_inspect_ir,
     METH_VARARGS | METH_KEYWORDS,
     "inspect_ir(signature=None): the lowered kiln IR of a specialisation."},
    {"inspect_llvm", (PyCFunction)(void (*)(void))Dispatcher_inspect_llvm,
     METH_VARARGS | METH_KEYWORDS,
     "inspect_llvm(signature=None): the optimised LLVM IR."},
    {"inspect_asm", (PyCFunction)(void (*)(void))Dispatcher_inspect_asm,
     METH_VARARGS | METH_KEYWORDS,
     "inspect_asm(signature=None): the host assembly."},
    {"inspect_spirv", (PyCFunction)(void (*)(void))Dispatcher_inspect_spirv,
     METH_VARARGS | METH_KEYWORDS,
     "inspect_spirv(signature=None): the SPIR-V of a Vulkan specialisation."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DispatcherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kiln.Dispatcher",
    .tp_doc = "A function compiled by kiln.jit: one specialisation per "
              "argument-type signature, compiled on first use.",
    .tp_basicsize = sizeof(KlDispatcher),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
                | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Dispatcher_new,
    .tp_dealloc = (destructor)Dispatcher_dealloc,
    .tp_traverse = (traverseproc)Dispatcher_traverse,
    .tp_clear = (inquiry)Dispatcher_clear,
    .tp_repr = (reprfunc)Dispatcher_repr,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(KlDispatcher, vectorcall),
    .tp_dictoffset = offsetof(KlDispatcher, dict),
    .tp_weaklistoffset = offsetof(KlDispatcher, weakrefs),
    .tp_getset = Dispatcher_getset,
    .tp_methods = Dispatcher_methods,
};

/* ---- module ----------------------------------------------------------- */

static PyObject *
core_set_num_threads(PyObject *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 1 || n > 256 || kl_pool_set_threads((int)n) < 0) {
        return PyErr_Format(PyExc_ValueError, "kiln.set_num_threads(): n "
                            "must be between 1 and 256, got %ld", n);
    }
    Py_RETURN_NONE;
}

static PyObject *
core_get_num_threads(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(kl_pool_get_threads());
}

static PyMethodDef core_methods[] = {
    {"set_num_threads", core_set_num_threads, METH_O,
     "set_num_threads(n): threads that run parallel loops."},
    {"get_num_threads", core_get_num_threads, METH_NOARGS,
     "get_num_threads(): threads that run parallel loops."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "kiln._core",
    .m_doc = "kiln's compiler core: the Dispatcher type and CompileError.",
    .m_size = -1,
    .m_methods = core_methods,
};

/* kiln.CompileError with class defaults filename = lineno = None. */
static PyObject *
make_compile_error(void)
{
    PyObject *dict = Py_BuildValue("{sOsO}", "filename", Py_None, "lineno",
                                   Py_None);
    if (dict == NULL) {
        return NULL;
    }
    PyObject *cls = PyErr_NewExceptionWithDoc(
        "kiln.CompileError",
        "A construct or type kiln cannot compile.  The message starts with "
        "file:line: of the offending Python source and quotes that line; "
        "the attributes filename and lineno hold them.",
        PyExc_Exception, dict);
    Py_DECREF(dict);
    return cls;
}

PyMODINIT_FUNC
PyInit__core(void)
{
    if (kl_types_init() < 0) {
        return PyErr_NoMemory();
    }
    if (PyType_Ready(&DispatcherType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL) {
        return NULL;
    }
    if (kl_CompileError == NULL) {
        kl_CompileError = make_compile_error();
        if (kl_CompileError == NULL) {
            Py_DECREF(m);
            return NULL;
        }
    }
    if (PyModule_AddObjectRef(m, "CompileError", kl_CompileError) < 0
        || PyModule_AddObjectRef(m, "Dispatcher",
                                 (PyObject *)&DispatcherType) < 0
        || PyModule_AddIntConstant(m, "MAX_NDIM", KL_MAX_NDIM) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
