/* compile.c: the pipeline driver.
 *
 * kl_compile() reads as the list of passes.  It owns the module (one arena
 * per compilation, freed on success and failure alike) and the table of
 * specialisations reached through calls, which infer asks for through
 * KlModule.resolve_call.  Requires the GIL: the frontend reads Python
 * objects.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "compile.h"
#include "passes/steps.h"
#include "runtime/vkexec.h"

#include <stdlib.h>
#include <string.h>

/* One function specialisation of the module being compiled. */
typedef struct Spec {
    void *pyfunc;               /* the Python function (borrowed) */
    const KlType **argtypes;    /* its argument types (arena) */
    int32_t nargs;
    int32_t index;              /* its index in mod->funcs */
    int done;                   /* typed (infer finished) */
} Spec;

typedef struct Driver {
    Spec *specs;                /* malloc'ed */
    int32_t nspecs, cap;
    const KlType *root_ret;     /* return annotation of the entry */
} Driver;

/* Records the source file of `pyfunc` in d unless an inner function
 * already did. */
static void
note_file(KlDiag *d, void *pyfunc)
{
    if (d->kind == KL_DIAG_NONE || d->file[0] != '\0') {
        return;
    }
    PyObject *code = PyObject_GetAttrString(pyfunc, "__code__");
    if (code == NULL) {
        PyErr_Clear();
        return;
    }
    const char *name = PyUnicode_AsUTF8(((PyCodeObject *)code)->co_filename);
    if (name != NULL) {
        snprintf(d->file, sizeof(d->file), "%s", name);
    }
    else {
        PyErr_Clear();
    }
    Py_DECREF(code);
}

static Spec *
find_spec(Driver *dr, void *pyfunc, const KlType **argtypes, int32_t nargs)
{
    for (int32_t i = 0; i < dr->nspecs; i++) {
        Spec *s = &dr->specs[i];
        if (s->pyfunc == pyfunc && s->nargs == nargs
            && memcmp(s->argtypes, argtypes,
                      sizeof(KlType *) * (size_t)nargs) == 0) {
            return s;
        }
    }
    return NULL;
}

static Spec *
add_spec(Driver *dr, KlModule *m, void *pyfunc, const KlType **argtypes,
         int32_t nargs)
{
    if (dr->nspecs == dr->cap) {
        int32_t cap = dr->cap ? dr->cap * 2 : 8;
        Spec *p = realloc(dr->specs, sizeof(Spec) * (size_t)cap);
        if (p == NULL) {
            return NULL;
        }
        dr->specs = p;
        dr->cap = cap;
    }
    const KlType **copy = kl_arena_alloc(&m->arena,
                                         sizeof(KlType *) * (size_t)(nargs + 1));
    if (copy == NULL) {
        return NULL;
    }
    memcpy(copy, argtypes, sizeof(KlType *) * (size_t)nargs);
    Spec *s = &dr->specs[dr->nspecs++];
    *s = (Spec){pyfunc, copy, nargs, -1, 0};
    return s;
}

/* KlResolveCall: the specialisation of `pyfunc` for `argtypes`, built and
 * typed on first request.  The first request made is the entry point. */
static int32_t
resolve(KlModule *m, void *pyfunc, const KlType **argtypes, int32_t nargs,
        int line, KlDiag *d)
{
    Driver *dr = m->resolve_ctx;
    Spec *s = find_spec(dr, pyfunc, argtypes, nargs);
    if (s != NULL) {
        if (s->index < 0) {
            /* built earlier and failed: its diagnostic is already out */
            return kl_compile_error(d, line, "call to a function that "
                                    "failed to compile");
        }
        KlFunc *f = m->funcs[s->index];
        if (!s->done && f->ret_type == NULL) {
            return kl_compile_error(d, line, "recursive call to %s() needs a "
                                    "return type annotation", f->name);
        }
        return s->index;
    }
    s = add_spec(dr, m, pyfunc, argtypes, nargs);
    if (s == NULL) {
        return kl_error(d, KL_DIAG_NOMEM, line, "out of memory");
    }
    int32_t spec_no = (int32_t)(s - dr->specs);
    const KlType **types = s->argtypes;
    KlFunc *f = kl_build_ir(m, pyfunc, d);
    if (f == NULL) {
        note_file(d, pyfunc);
        return -1;
    }
    if (f->nparams != nargs) {
        kl_compile_error(d, line, "%s() takes %d positional arguments but %d "
                         "were given", f->name, f->nparams, nargs);
        return -1;
    }
    f->param_types = types;
    if (m->nfuncs == 1) {
        f->ret_type = dr->root_ret;
    }
    dr->specs[spec_no].index = m->nfuncs - 1;
    if (kl_infer(f, d) < 0) {
        note_file(d, pyfunc);
        return -1;
    }
    dr->specs[spec_no].done = 1;
    return dr->specs[spec_no].index;
}

/* Copies the module's raise table out of the arena into c, taking a
 * reference to each user exception class. */
static int
keep_raises(KlCompiled *c, const KlModule *m)
{
    c->raises = calloc((size_t)m->nraises + 1, sizeof(KlRaiseSite));
    if (c->raises == NULL) {
        return -1;
    }
    for (int32_t i = 0; i < m->nraises; i++) {
        KlRaiseSite s = m->raises[i];
        s.msg = strdup(s.msg);
        if (s.msg == NULL) {
            return -1;
        }
        Py_XINCREF((PyObject *)s.exc_class);
        c->raises[i] = s;
        c->nraises = i + 1;
    }
    return 0;
}

/* Lowers and verifies every function of the module. */
static int
lower_all(KlModule *m, KlDiag *d)
{
    for (int32_t i = 0; i < m->nfuncs; i++) {
        KlFunc *f = m->funcs[i];
        if (f->ret_type == NULL) {
            return kl_internal_error(d, "%s was never typed", f->name);
        }
        if (kl_bounds(f, d) < 0
            || kl_parallel(f, d) < 0 || kl_lower(f, d) < 0
            || (m->options.target == 0 && kl_defer(f, d) < 0)
            || kl_verify(f, 1, d) < 0) {
            if (d->file[0] == '\0') {
                snprintf(d->file, sizeof(d->file), "%s", f->filename);
            }
            return -1;
        }
    }
    return 0;
}

/* The Vulkan target: a serial kernel for a module without `pfor`; else
 * a serial kernel per step of the entry split at its pfors
 * (passes/steps.h) and a kernel per pfor body. */
static int
vulkan_kernels(KlCompiled *c, KlModule *m, KlDiag *d)
{
    KlSteps plan;
    int split = kl_steps(m, &plan, d);
    if (split <= 0) {
        c->vk_serial = split == 0 ? kl_vk_kernel_new(m, 0, KL_SPV_SERIAL, d)
                                  : NULL;
        return c->vk_serial != NULL ? 0 : -1;
    }
    KlVkKernel **kernels = calloc((size_t)m->nfuncs + 1, sizeof(void *));
    c->vk_kernels = calloc((size_t)m->nfuncs + 1, sizeof(KlVkKernel *));
    int rc = -1;
    if (kernels == NULL || c->vk_kernels == NULL) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        goto done;
    }
    for (int32_t fi = plan.first; fi <= plan.first + plan.npfors; fi++) {
        if ((kernels[fi] = kl_vk_kernel_new(m, fi, KL_SPV_SERIAL, d))
            == NULL) {
            goto done;
        }
        c->vk_kernels[c->nvk++] = kernels[fi];
    }
    for (int32_t j = 0; j < plan.npfors; j++) {
        int32_t fi = plan.pfors[j].body;    /* shared by inlined copies */
        if (kernels[fi] != NULL) {
            continue;
        }
        if ((kernels[fi] = kl_vk_kernel_new(m, fi, KL_SPV_PFOR, d)) == NULL) {
            goto done;
        }
        c->vk_kernels[c->nvk++] = kernels[fi];
    }
    c->vk_steps = kl_vk_steps_new(m, &plan, kernels, d);
    rc = c->vk_steps != NULL ? 0 : -1;
done:
    free(kernels);
    return rc;
}

/* The CPU target's passes over the whole lowered module: stream, then
 * jam. */
static int
cpu_passes(KlModule *m, uint64_t *streamed, KlDiag *d)
{
    int32_t **map = kl_array_params(m);
    int rc = map == NULL ? kl_error(d, KL_DIAG_NOMEM, 0, "out of memory")
             : kl_stream(m, map, streamed, d) < 0 || kl_jam(m, map, d) < 0
             ? -1 : 0;
    kl_array_params_free(m, map);
    return rc;
}

/* kl_compile, or kl_compile_object when obj is non-NULL. */
static KlCompiled *
compile_any(void *func, const KlType **argtypes, int32_t nargs,
            const KlType *ret_annot, KlOptions options, int want_text,
            const char *entry_name, KlObjCode *obj, KlDiag *d)
{
    KlCompiled *c = calloc(1, sizeof(KlCompiled));
    KlModule *m = kl_module_new(options);
    Driver dr = {NULL, 0, 0, ret_annot};
    if (c == NULL || m == NULL) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        goto fail;
    }
    m->resolve_call = resolve;
    m->resolve_ctx = &dr;

    if (resolve(m, func, argtypes, nargs, 0, d) < 0
        || lower_all(m, d) < 0
        || (options.target == 0 && cpu_passes(m, &c->stream_arrays, d) < 0)) {
        goto fail;
    }
    if (want_text && (c->ir_text = kl_module_print(m)) == NULL) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        goto fail;
    }
    if (obj != NULL) {
        if (options.target != 0) {
            kl_internal_error(d, "only CPU code is kept as an object file");
            goto fail;
        }
        if ((c->entry = kl_llvm_compile_object(m, entry_name, obj,
                                               d)) == NULL) {
            goto fail;
        }
    }
    else if (options.target == 1) {
        if (vulkan_kernels(c, m, d) < 0) {
            goto fail;
        }
    }
    else if ((c->entry = kl_llvm_compile(m, want_text ? &c->text : NULL,
                                         d)) == NULL) {
        goto fail;
    }
    c->ret_type = m->funcs[0]->ret_type;
    if (keep_raises(c, m) < 0) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        goto fail;
    }
    free(dr.specs);
    kl_module_free(m);
    return c;

fail:
    if (d->kind == KL_DIAG_NONE) {
        kl_internal_error(d, "compilation failed without a diagnostic");
    }
    free(dr.specs);
    kl_module_free(m);
    kl_compiled_free(c);
    return NULL;
}

KlCompiled *
kl_compile(void *func, const KlType **argtypes, int32_t nargs,
           const KlType *ret_annot, KlOptions options, int want_text,
           KlDiag *d)
{
    return compile_any(func, argtypes, nargs, ret_annot, options, want_text,
                       NULL, NULL, d);
}

KlCompiled *
kl_compile_object(void *func, const KlType **argtypes, int32_t nargs,
                  const KlType *ret_annot, KlOptions options,
                  const char *entry_name, KlObjCode *obj, KlDiag *d)
{
    obj->data = NULL;
    obj->size = 0;
    KlCompiled *c = compile_any(func, argtypes, nargs, ret_annot, options, 0,
                                entry_name, obj, d);
    if (c == NULL) {
        free(obj->data);
        obj->data = NULL;
        obj->size = 0;
    }
    return c;
}

void
kl_compiled_free(KlCompiled *c)
{
    if (c == NULL) {
        return;
    }
    for (int32_t i = 0; i < c->nraises; i++) {
        free((char *)c->raises[i].msg);
        Py_XDECREF((PyObject *)c->raises[i].exc_class);
    }
    free(c->raises);
    free(c->ir_text);
    free(c->text.llvm_ir);
    free(c->text.asm_text);
    kl_vk_kernel_free(c->vk_serial);
    for (int32_t i = 0; i < c->nvk; i++) {
        kl_vk_kernel_free(c->vk_kernels[i]);
    }
    free(c->vk_kernels);
    kl_vk_steps_free(c->vk_steps);
    free(c);
}
