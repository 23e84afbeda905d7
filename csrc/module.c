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
#include "runtime/vkexec.h"
#include "runtime/vulkan.h"

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
    self->options.target = (uint8_t)(vulkan != 0);
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
        const KlSpecialisation *e = &self->entries[j];
        KlCompiled *cs[KL_CODE__COUNT + 1] = {e->texts};
        memcpy(cs + 1, e->code, sizeof(e->code));
        for (int k = 0; k <= KL_CODE__COUNT; k++) {
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
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    /* a C-contiguous and a strided call of one `f32[:]` annotation are two
     * specialisations with one signature: listed once */
    for (int32_t j = 0; j < self->nentries; j++) {
        PyObject *s = kl_signature_str(self, &self->entries[j]);
        int seen = s == NULL ? -1 : PySequence_Contains(list, s);
        if (seen < 0 || (!seen && PyList_Append(list, s) < 0)) {
            Py_XDECREF(s);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(s);
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

static PyObject *
Dispatcher_get_cache_hits(KlDispatcher *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(self->cache_hits);
}

static PyGetSetDef Dispatcher_getset[] = {
    {"py_func", (getter)Dispatcher_get_py_func, NULL,
     "The original Python function.", NULL},
    {"signatures", (getter)Dispatcher_get_signatures, NULL,
     "The compiled signatures, e.g. '(float64, float32[:]) -> none'.", NULL},
    {"target", (getter)Dispatcher_get_target, NULL,
     "The target this dispatcher compiles for.", NULL},
    {"cache_hits", (getter)Dispatcher_get_cache_hits, NULL,
     "How many specialisations were loaded from the disk cache "
     "(cache=True) instead of compiled.", NULL},
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
                                   kl_entry_options(self, &self->entries[j]),
                                   1, &d);
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
    if (text == NULL && (t->vk_serial != NULL || t->vk_steps != NULL)) {
        PyErr_SetString(PyExc_ValueError,
                        "kiln: this Vulkan kernel runs entirely on the "
                        "device and has no host code; see inspect_spirv()");
        return NULL;
    }
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

/* The SPIR-V modules of the Vulkan specialisation `sig` names, as a list
 * of bytes: the serial kernel, or each pfor body's kernel in order. */
static PyObject *
spirv_modules(KlDispatcher *self, PyObject *sig)
{
    if (!self->vulkan) {
        PyErr_SetString(PyExc_ValueError,
                        "kiln: inspect_spirv() needs a dispatcher built with "
                        "target='vulkan'");
        return NULL;
    }
    int32_t j = find_entry(self, sig);
    if (j < 0) {
        return NULL;
    }
    const KlSpecialisation *e = &self->entries[j];
    const KlCompiled *c = kl_entry_code(e);
    if (c == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "kiln: no compiled code");
        return NULL;
    }
    PyObject *list = PyList_New(0);
    int32_t n = c->vk_serial != NULL ? 1 : c->nvk;
    for (int32_t i = 0; list != NULL && i < n; i++) {
        size_t nw;
        const uint32_t *w = kl_vk_kernel_words(
            c->vk_serial != NULL ? c->vk_serial : c->vk_kernels[i], &nw);
        PyObject *b = PyBytes_FromStringAndSize((const char *)w,
                                                (Py_ssize_t)(nw * 4));
        if (b == NULL || PyList_Append(list, b) < 0) {
            Py_XDECREF(b);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(b);
    }
    return list;
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
    PyObject *mods = spirv_modules(self, sig);
    if (mods == NULL) {
        return NULL;
    }
    PyObject *vk = PyImport_ImportModule("kiln.vulkan");
    PyObject *r = vk != NULL
                  ? PyObject_CallMethod(vk, "_disassemble", "O", mods) : NULL;
    Py_XDECREF(vk);
    Py_DECREF(mods);
    return r;
}

static PyObject *
Dispatcher_spirv_modules(KlDispatcher *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"signature", NULL};
    PyObject *sig = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:_spirv_modules", kwlist,
                                     &sig)) {
        return NULL;
    }
    return spirv_modules(self, sig);
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
    {"_spirv_modules", (PyCFunction)(void (*)(void))Dispatcher_spirv_modules,
     METH_VARARGS | METH_KEYWORDS,
     "_spirv_modules(signature=None): a Vulkan specialisation's SPIR-V "
     "modules as bytes (testing)."},
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

/* ---- Vulkan runtime (kiln.vulkan) -------------------------------------- */

/* Raises the Python exception for a failed runtime call. */
static PyObject *
vk_raise(const KlDiag *d)
{
    if (d->kind == KL_DIAG_NOMEM) {
        return PyErr_NoMemory();
    }
    PyErr_Format(PyExc_RuntimeError, "kiln: %s", d->msg);
    return NULL;
}

/* _vk_init(): None when a Vulkan device is ready, else why there is none.
 * Initialises the runtime on the first call (without the GIL). */
static PyObject *
core_vk_init(PyObject *self, PyObject *unused)
{
    KlDiag d = {0};
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = kl_vk_init(&d);
    Py_END_ALLOW_THREADS
    if (r == 0) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(d.msg);
}

/* _vk_device_info(): the selected device's KlVkInfo as a dict; None when
 * the runtime is not initialised. */
static PyObject *
core_vk_device_info(PyObject *self, PyObject *unused)
{
    static const char *const kinds[] = {"discrete", "integrated", "virtual",
                                        "cpu", "other"};
    const KlVkInfo *i = kl_vk_info();
    if (i == NULL) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue(
        "{sssssIsIsIsIsI"
        "sOsOsOsOsOsOsOsOsOsOsOsOsOsOsK"
        "sIsIsKsKsIsIsIs(III)s(III)sIsIsdsOsK}",
        "name", i->name, "kind", kinds[i->kind], "index", i->index,
        "vendor_id", i->vendor_id, "device_id", i->device_id,
        "api_version", i->api_version, "spirv_version", i->spirv_version,
        "float64", i->float64 ? Py_True : Py_False,
        "int64", i->int64 ? Py_True : Py_False,
        "int16", i->int16 ? Py_True : Py_False,
        "int8", i->int8 ? Py_True : Py_False,
        "float16", i->float16 ? Py_True : Py_False,
        "storage8", i->storage8 ? Py_True : Py_False,
        "storage16", i->storage16 ? Py_True : Py_False,
        "buffer_device_address",
        i->buffer_device_address ? Py_True : Py_False,
        "scalar_block_layout", i->scalar_block_layout ? Py_True : Py_False,
        "vulkan_memory_model", i->vulkan_memory_model ? Py_True : Py_False,
        "int64_atomics", i->int64_atomics ? Py_True : Py_False,
        "float32_atomic_add", i->float32_atomic_add ? Py_True : Py_False,
        "float64_atomic_add", i->float64_atomic_add ? Py_True : Py_False,
        "external_memory_host",
        i->external_memory_host ? Py_True : Py_False,
        "host_import_alignment",
        (unsigned long long)i->host_import_alignment,
        "subgroup_size", i->subgroup_size, "subgroup_ops", i->subgroup_ops,
        "max_storage_buffer_range",
        (unsigned long long)i->max_storage_buffer_range,
        "max_allocation_size", (unsigned long long)i->max_allocation_size,
        "min_storage_offset_alignment", i->min_storage_offset_alignment,
        "max_push_constants_size", i->max_push_constants_size,
        "max_storage_buffers", i->max_storage_buffers,
        "max_workgroup_count", i->max_workgroup_count[0],
        i->max_workgroup_count[1], i->max_workgroup_count[2],
        "max_workgroup_size", i->max_workgroup_size[0],
        i->max_workgroup_size[1], i->max_workgroup_size[2],
        "max_workgroup_invocations", i->max_workgroup_invocations,
        "max_shared_memory", i->max_shared_memory,
        "timestamp_period", i->timestamp_period,
        "unified_memory", i->unified_memory ? Py_True : Py_False,
        "device_memory", (unsigned long long)i->device_memory);
}

/* _vk_builtin_spirv(name): the SPIR-V of a built-in shader, as bytes. */
static PyObject *
core_vk_builtin_spirv(PyObject *self, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL) {
        return NULL;
    }
    size_t n;
    const uint32_t *words = kl_vk_builtin_spirv(name, &n);
    if (words == NULL) {
        return PyErr_Format(PyExc_KeyError, "no built-in shader '%s'", name);
    }
    return PyBytes_FromStringAndSize((const char *)words, (Py_ssize_t)n * 4);
}

/* One dispatch of _vk_run, parsed. */
typedef struct VkRunStep {
    KlVkPipeline *pipe;
    uint32_t groups[3];
    char push[256];             /* push constant bytes */
    KlVkBuffer *bind[64];       /* bindings */
} VkRunStep;

/* Parses (spirv, (x, y, z)[, push[, bindings[, spec]]]) into *st and
 * builds its pipeline; bindings index bufs[0 .. nbufs) (default: all). */
static int
vk_run_step(PyObject *item, KlVkBuffer **bufs, Py_ssize_t nbufs,
            VkRunStep *st)
{
    Py_buffer code = {0}, push = {0};
    PyObject *bindings = NULL, *spec = NULL;
    uint32_t *words = NULL, specs[64];
    int ok = -1;
    if (!PyArg_ParseTuple(item, "y*(III)|y*OO;_vk_run: bad dispatch", &code,
                          &st->groups[0], &st->groups[1], &st->groups[2],
                          &push, &bindings, &spec)) {
        return -1;
    }
    Py_ssize_t nb = bindings ? PySequence_Size(bindings) : nbufs;
    Py_ssize_t ns = spec ? PySequence_Size(spec) : 0;
    if (nb < 0 || ns < 0 || nb > 64 || ns > 64 || code.len % 4 != 0
        || push.len > 256) {
        PyErr_SetString(PyExc_ValueError, "_vk_run: bad dispatch");
        goto done;
    }
    for (Py_ssize_t k = bindings ? 0 : nb; k < nb + ns; k++) {
        PyObject *o = k < nb ? PySequence_GetItem(bindings, k)
                             : PySequence_GetItem(spec, k - nb);
        long v = o ? PyLong_AsLong(o) : -1;
        Py_XDECREF(o);
        if (PyErr_Occurred() || (k < nb && (v < 0 || v >= nbufs))) {
            PyErr_SetString(PyExc_ValueError, "_vk_run: bad binding or spec");
            goto done;
        }
        if (k < nb) {
            st->bind[k] = bufs[v];
        } else {
            specs[k - nb] = (uint32_t)v;
        }
    }
    if (bindings == NULL) {
        for (Py_ssize_t k = 0; k < nb; k++) {
            st->bind[k] = bufs[k];
        }
    }
    if (push.len > 0) {
        memcpy(st->push, push.buf, (size_t)push.len);
    }
    words = PyMem_Malloc(code.len ? (size_t)code.len : 4);
    if (words == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(words, code.buf, (size_t)code.len);
    KlDiag d = {0};
    Py_BEGIN_ALLOW_THREADS
    st->pipe = kl_vk_pipeline(words, (size_t)code.len / 4, "main",
                              (uint32_t)nb, (uint32_t)push.len, specs,
                              (uint32_t)ns, &d);
    Py_END_ALLOW_THREADS
    if (st->pipe == NULL) {
        vk_raise(&d);
        goto done;
    }
    ok = 0;
done:
    PyMem_Free(words);
    PyBuffer_Release(&code);
    PyBuffer_Release(&push);
    return ok;
}

/* Uploads, runs the steps and downloads in one batch, without the GIL. */
static int
vk_run_batch(KlVkBuffer **bufs, Py_buffer *views, Py_ssize_t nbufs,
             VkRunStep *steps, Py_ssize_t nsteps, KlDiag *d)
{
    int r = 0;
    KlVkBatch *bt;
    Py_BEGIN_ALLOW_THREADS
    bt = kl_vk_batch_begin(d);
    for (Py_ssize_t i = 0; bt != NULL && r == 0 && i < nbufs; i++) {
        r = kl_vk_batch_upload(bt, bufs[i], 0, views[i].buf,
                               (uint64_t)views[i].len, d);
    }
    for (Py_ssize_t s = 0; bt != NULL && r == 0 && s < nsteps; s++) {
        r = kl_vk_batch_dispatch(bt, steps[s].pipe, steps[s].bind,
                                 steps[s].push, steps[s].groups[0],
                                 steps[s].groups[1], steps[s].groups[2], d);
    }
    for (Py_ssize_t i = 0; bt != NULL && r == 0 && i < nbufs; i++) {
        r = kl_vk_batch_download(bt, bufs[i], 0, views[i].buf,
                                 (uint64_t)views[i].len, d);
    }
    if (bt == NULL) {
        r = -1;
    } else if (r < 0) {
        kl_vk_batch_discard(bt);
    } else {
        r = kl_vk_batch_submit(bt, d);
    }
    Py_END_ALLOW_THREADS
    return r;
}

/* _vk_run(buffers, dispatches, import_host=False): a test and debugging
 * entry point.  Each buffer (a writable, contiguous buffer-protocol
 * object) is copied to the device, or imported when import_host is true
 * and its memory allows; every dispatch (spirv_bytes, (x, y, z)[, push
 * bytes[, binding indices[, spec constants]]]) runs in order with entry
 * "main"; the buffers are then copied back.  Returns the number of
 * buffers that were imported. */
static PyObject *
core_vk_run(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffers", "dispatches", "import_host", NULL};
    PyObject *buffers, *dispatches, *result = NULL;
    int import_host = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|p:_vk_run", kwlist,
                                     &buffers, &dispatches, &import_host)) {
        return NULL;
    }
    KlDiag d = {0};
    if (kl_vk_init(&d) < 0) {
        return vk_raise(&d);
    }
    PyObject *bseq = PySequence_Fast(buffers, "_vk_run: buffers not a list");
    PyObject *dseq = bseq ? PySequence_Fast(dispatches, "_vk_run: "
                                            "dispatches not a list") : NULL;
    if (dseq == NULL) {
        Py_XDECREF(bseq);
        return NULL;
    }
    Py_ssize_t nb = PySequence_Fast_GET_SIZE(bseq);
    Py_ssize_t ns = PySequence_Fast_GET_SIZE(dseq);
    Py_buffer *views = PyMem_Calloc(nb + 1, sizeof *views);
    KlVkBuffer **bufs = PyMem_Calloc(nb + 1, sizeof *bufs);
    VkRunStep *steps = PyMem_Calloc(ns + 1, sizeof *steps);
    Py_ssize_t got = 0, imported = 0;
    if (views == NULL || bufs == NULL || steps == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < nb; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(bseq, got),
                               &views[got], PyBUF_WRITABLE) < 0) {
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < nb; i++) {
        void *p = views[i].buf;
        uint64_t n = (uint64_t)views[i].len;
        bool imp = import_host && kl_vk_host_importable(p, n);
        bufs[i] = imp ? kl_vk_buffer_import(p, n, &d)
                      : kl_vk_buffer_create(n, &d);
        if (bufs[i] == NULL) {
            vk_raise(&d);
            goto done;
        }
        imported += imp;
    }
    for (Py_ssize_t s = 0; s < ns; s++) {
        if (vk_run_step(PySequence_Fast_GET_ITEM(dseq, s), bufs, nb,
                        &steps[s]) < 0) {
            goto done;
        }
    }
    if (vk_run_batch(bufs, views, nb, steps, ns, &d) < 0) {
        vk_raise(&d);
        goto done;
    }
    result = PyLong_FromSsize_t(imported);
done:
    for (Py_ssize_t i = 0; bufs != NULL && i < nb; i++) {
        kl_vk_buffer_destroy(bufs[i]);
    }
    for (Py_ssize_t i = 0; i < got; i++) {
        PyBuffer_Release(&views[i]);
    }
    PyMem_Free(views);
    PyMem_Free(bufs);
    PyMem_Free(steps);
    Py_DECREF(bseq);
    Py_DECREF(dseq);
    return result;
}

/* ---- device memory behind kiln.vulkan.DeviceArray ---------------------- */

/* The device buffer of the range starting at Python int `addr` (from
 * _vk_devmem_new) and the range's byte offset in it; NULL with ValueError
 * when addr is not a live device range. */
static KlVkBuffer *
devmem_of(PyObject *addr, uint64_t *offset)
{
    void *p = PyLong_AsVoidPtr(addr);
    if (p == NULL && PyErr_Occurred()) {
        return NULL;
    }
    KlVkBuffer *b = p != NULL ? kl_vk_devmem_find(p, offset) : NULL;
    if (b == NULL) {
        PyErr_SetString(PyExc_ValueError,
                        "kiln: not a live device array (already freed?)");
    }
    return b;
}

/* _vk_devmem_new(nbytes): reserves a device range of nbytes backed by a
 * new device buffer (vkexec.h); returns its base address as an int.
 * RuntimeError when there is no device or device memory runs out. */
static PyObject *
core_vk_devmem_new(PyObject *self, PyObject *arg)
{
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    KlDiag d = {0};
    void *base = NULL;
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = kl_vk_init(&d);
    if (r == 0) {
        base = kl_vk_devmem_new((uint64_t)n, &d);
    }
    Py_END_ALLOW_THREADS
    if (r < 0) {
        return PyErr_Format(PyExc_RuntimeError,
                            "kiln: no Vulkan device is available: %s", d.msg);
    }
    if (base == NULL) {
        return vk_raise(&d);
    }
    return PyLong_FromVoidPtr(base);
}

/* _vk_devmem_free(addr): releases a range from _vk_devmem_new (an address
 * that is not a live range is ignored). */
static PyObject *
core_vk_devmem_free(PyObject *self, PyObject *arg)
{
    void *p = PyLong_AsVoidPtr(arg);
    if (p == NULL && PyErr_Occurred()) {
        return NULL;
    }
    if (p != NULL && kl_vk_ready()) {
        Py_BEGIN_ALLOW_THREADS
        kl_vk_devmem_free(p);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

/* _vk_devmem_copy(addr, buffer, to_device): copies the bytes of a
 * C-contiguous buffer-protocol object into the device range at addr
 * (to_device true) or the range's first bytes into the (writable)
 * object; the range must be at least that long. */
static PyObject *
core_vk_devmem_copy(PyObject *self, PyObject *args)
{
    PyObject *addr, *obj;
    int to_device;
    if (!PyArg_ParseTuple(args, "OOp:_vk_devmem_copy", &addr, &obj,
                          &to_device)) {
        return NULL;
    }
    uint64_t offset;
    KlVkBuffer *b = devmem_of(addr, &offset);
    if (b == NULL) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, to_device ? PyBUF_C_CONTIGUOUS
                           : PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (offset + (uint64_t)view.len > kl_vk_buffer_size(b)) {
        PyBuffer_Release(&view);
        return PyErr_Format(PyExc_ValueError, "kiln: %zd bytes do not fit "
                            "the device array", view.len);
    }
    KlDiag d = {0};
    int r = 0;
    if (view.len > 0) {
        Py_BEGIN_ALLOW_THREADS
        r = to_device
            ? kl_vk_buffer_upload(b, offset, view.buf, (uint64_t)view.len, &d)
            : kl_vk_buffer_download(b, offset, view.buf, (uint64_t)view.len,
                                    &d);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    if (r < 0) {
        return vk_raise(&d);
    }
    Py_RETURN_NONE;
}

/* _set_device_array_type(cls): the class the dispatcher treats as a
 * device array (kiln.vulkan.DeviceArray; see dispatch.c). */
static PyObject *
core_set_device_array_type(PyObject *self, PyObject *arg)
{
    if (!PyType_Check(arg)) {
        return PyErr_Format(PyExc_TypeError, "expected a class");
    }
    Py_XSETREF(kl_DeviceArrayType, Py_NewRef(arg));
    Py_RETURN_NONE;
}

static PyMethodDef core_methods[] = {
    {"set_num_threads", core_set_num_threads, METH_O,
     "set_num_threads(n): threads that run parallel loops."},
    {"get_num_threads", core_get_num_threads, METH_NOARGS,
     "get_num_threads(): threads that run parallel loops."},
    {"_vk_init", core_vk_init, METH_NOARGS,
     "_vk_init(): None when a Vulkan device is ready, else the reason."},
    {"_vk_device_info", core_vk_device_info, METH_NOARGS,
     "_vk_device_info(): the Vulkan device's properties (dict) or None."},
    {"_vk_builtin_spirv", core_vk_builtin_spirv, METH_O,
     "_vk_builtin_spirv(name): SPIR-V bytes of a built-in shader."},
    {"_vk_run", (PyCFunction)(void (*)(void))core_vk_run,
     METH_VARARGS | METH_KEYWORDS,
     "_vk_run(buffers, dispatches, import_host=False): runs SPIR-V "
     "(testing)."},
    {"_vk_devmem_new", core_vk_devmem_new, METH_O,
     "_vk_devmem_new(nbytes): a new device range; its base address."},
    {"_vk_devmem_free", core_vk_devmem_free, METH_O,
     "_vk_devmem_free(addr): releases a device range."},
    {"_vk_devmem_copy", core_vk_devmem_copy, METH_VARARGS,
     "_vk_devmem_copy(addr, buffer, to_device): host <-> device bytes."},
    {"_set_device_array_type", core_set_device_array_type, METH_O,
     "_set_device_array_type(cls): registers kiln.vulkan.DeviceArray."},
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
