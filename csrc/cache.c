/* cache.c: compiled CPU code kept on disk across processes.
 *
 * kl_cache_compile() builds the key of a specialisation (key_build: a byte
 * string describing everything the code depends on, see cache.h), names
 * the entry after its SHA-256, and either loads the entry (entry_load:
 * the object file linked by the JIT, the raise table re-resolved) or
 * compiles with the host code kept as an object file and stores it
 * (entry_store).  Whatever goes wrong with the cache only makes a miss.
 *
 * An entry file holds, in host byte order:
 *   "KLCACHE2", u64 key size, key, str entry symbol,
 *   u8 x 4 return type (kind, bits, signed, weak),
 *   u64 stream_arrays (KlCompiled),
 *   u32 raise count, per raise: i32 kind, i32 line, str message,
 *   str class module, str class qualname ("" for kiln's own kinds),
 *   u64 object size, object file,
 *   u64 FNV-1a checksum of everything before it;
 * a str is a u64 length and the bytes.
 *
 * The key describes objects the way the frontend resolves them
 * (frontend/build.c: resolve_object), so that any change that can change
 * what the frontend builds changes the key: a function by its code object
 * (bytecode, constants, names, lines), defaults and the value of every
 * name of co_names in its globals or builtins; a module by its name and
 * the value of each attribute its user's bytecode loads (LOAD_ATTR,
 * LOAD_METHOD); numbers by their exact bits; builtin functions, types and
 * exception classes by module and qualified name; anything else by its
 * type.  Shared objects are described once and referred back to, so
 * recursion and cycles terminate.  Anything the key cannot describe
 * disables the cache for that compilation.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <opcode.h>

#include "cache.h"
#include "frontend/decode.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "KLCACHE2"
#define MAX_ENTRY_SIZE ((size_t)1 << 30)    /* larger files are refused */
#define MAX_DEPTH 200                       /* deeper objects: no cache */

/* ---- byte buffers ---------------------------------------------------- */

/* A growable byte string; `failed` once an allocation failed. */
typedef struct Buf {
    char *p;
    size_t n, cap;
    int failed;
} Buf;

static void
put(Buf *b, const void *x, size_t n)
{
    if (b->failed) {
        return;
    }
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}

static void
put_u8(Buf *b, uint8_t v)
{
    put(b, &v, 1);
}

static void
put_u32(Buf *b, uint32_t v)
{
    put(b, &v, 4);
}

static void
put_u64(Buf *b, uint64_t v)
{
    put(b, &v, 8);
}

static void
put_str(Buf *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

static void
put_cstr(Buf *b, const char *s)
{
    put_str(b, s, strlen(s));
}

/* 64-bit FNV-1a of p[0..n). */
static uint64_t
fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (uint8_t)p[i]) * 0x100000001b3ULL;
    }
    return h;
}

/* ---- the key --------------------------------------------------------- */

/* State of one key construction. */
typedef struct Keyer {
    Buf buf;            /* the key so far */
    PyObject *memo;     /* dict: object address -> description number */
    PyObject *keep;     /* list keeping described objects alive (their
                           addresses are memo keys) */
    PyObject *excs;     /* list of the exception classes met */
    PyObject *prange;   /* kiln.prange, or NULL */
    int refuse;         /* something could not be described: no cache */
    int depth;          /* nesting of describe calls */
} Keyer;

static void describe(Keyer *k, PyObject *obj, PyObject *attrs);

/* Gives up on the key (clearing any Python error). */
static void
refuse(Keyer *k)
{
    PyErr_Clear();
    k->refuse = 1;
}

/* Writes a str object's UTF-8 bytes (refusing strings that have none). */
static void
put_unicode(Keyer *k, PyObject *s)
{
    Py_ssize_t n;
    const char *u = PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &n)
                                       : NULL;
    if (u == NULL) {
        refuse(k);
        return;
    }
    put_str(&k->buf, u, (size_t)n);
}

/* 1 when obj was described before in context ctx (a back reference is
 * written), else 0 after giving it the next description number.  ctx is
 * NULL for objects described the same way wherever they are met, and the
 * attribute names for modules (whose description depends on them). */
static int
seen(Keyer *k, PyObject *obj, PyObject *ctx)
{
    PyObject *addr = PyLong_FromVoidPtr(obj);
    PyObject *id = addr != NULL && ctx != NULL
        ? PyTuple_Pack(2, addr, ctx) : Py_XNewRef(addr);
    Py_XDECREF(addr);
    if (id == NULL) {
        refuse(k);
        return 1;
    }
    PyObject *no = PyDict_GetItemWithError(k->memo, id);
    if (no != NULL) {
        put_u8(&k->buf, '^');
        put_u64(&k->buf, (uint64_t)PyLong_AsSsize_t(no));
        Py_DECREF(id);
        return 1;
    }
    PyObject *next = PyLong_FromSsize_t(PyDict_GET_SIZE(k->memo));
    if (next == NULL || PyDict_SetItem(k->memo, id, next) < 0
        || PyList_Append(k->keep, obj) < 0) {
        refuse(k);
        Py_XDECREF(next);
        Py_DECREF(id);
        return 1;
    }
    Py_DECREF(next);
    Py_DECREF(id);
    return 0;
}

/* None, bool, int, float, complex and str with their exact values; 1 when
 * obj is one of them, else 0. */
static int
describe_plain(Keyer *k, PyObject *obj)
{
    if (obj == Py_None) {
        put_u8(&k->buf, 'N');
    }
    else if (PyBool_Check(obj)) {
        put_u8(&k->buf, 'b');
        put_u8(&k->buf, obj == Py_True);
    }
    else if (PyLong_Check(obj)) {
        PyObject *r = PyLong_Type.tp_repr(obj);   /* int's value, whatever
                                                     the subclass */
        put_u8(&k->buf, 'i');
        if (r == NULL) {
            refuse(k);
            return 1;
        }
        put_unicode(k, r);
        Py_DECREF(r);
    }
    else if (PyFloat_Check(obj)) {
        double x = PyFloat_AS_DOUBLE(obj);
        put_u8(&k->buf, 'f');
        put(&k->buf, &x, sizeof x);
    }
    else if (PyComplex_Check(obj)) {
        Py_complex c = PyComplex_AsCComplex(obj);
        put_u8(&k->buf, 'c');
        put(&k->buf, &c.real, sizeof c.real);
        put(&k->buf, &c.imag, sizeof c.imag);
    }
    else if (PyUnicode_Check(obj)) {
        put_u8(&k->buf, 's');
        put_unicode(k, obj);
    }
    else {
        return 0;
    }
    return 1;
}

/* A NumPy scalar the frontend folds (its type is a kiln scalar): type
 * name and bytes; 1 when obj is one, else 0. */
static int
describe_numpy_scalar(Keyer *k, PyObject *obj)
{
    if (kl_numpy_scalar_type(obj) == NULL) {
        return 0;
    }
    const char *tn = Py_TYPE(obj)->tp_name;
    PyObject *bytes = PyObject_CallMethod(obj, "tobytes", NULL);
    put_u8(&k->buf, 'n');
    put_cstr(&k->buf, tn);
    if (bytes == NULL || !PyBytes_Check(bytes)) {
        Py_XDECREF(bytes);
        refuse(k);
        return 1;
    }
    put_str(&k->buf, PyBytes_AS_STRING(bytes),
            (size_t)PyBytes_GET_SIZE(bytes));
    Py_DECREF(bytes);
    return 1;
}

/* Attribute `name` of obj as a string object, or a refusal. */
static void
put_attr_str(Keyer *k, PyObject *obj, const char *name)
{
    PyObject *v = PyObject_GetAttrString(obj, name);
    if (v == NULL) {
        refuse(k);
        return;
    }
    if (v == Py_None) {
        put_u8(&k->buf, 'N');
    }
    else {
        put_unicode(k, v);
    }
    Py_DECREF(v);
}

static void describe_code(Keyer *k, PyObject *code);

/* An entry of co_consts (or a code object field): exact values of the
 * constant types Python emits; anything else refuses. */
static void
describe_const(Keyer *k, PyObject *obj)
{
    if (describe_plain(k, obj)) {
        return;
    }
    if (obj == Py_Ellipsis) {
        put_u8(&k->buf, 'e');
    }
    else if (PyBytes_Check(obj)) {
        put_u8(&k->buf, 'y');
        put_str(&k->buf, PyBytes_AS_STRING(obj),
                (size_t)PyBytes_GET_SIZE(obj));
    }
    else if (PyTuple_Check(obj)) {
        put_u8(&k->buf, 't');
        put_u64(&k->buf, (uint64_t)PyTuple_GET_SIZE(obj));
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(obj) && !k->refuse; i++) {
            describe_const(k, PyTuple_GET_ITEM(obj, i));
        }
    }
    else if (PyCode_Check(obj)) {
        describe_code(k, obj);
    }
    else {
        /* frozensets (iteration order varies between processes) and
         * anything else: kiln compiles neither */
        refuse(k);
    }
}

/* A code object: every field of it, in order. */
static void
describe_code(Keyer *k, PyObject *code)
{
    static const char *const fields[] = {
        "co_argcount", "co_posonlyargcount", "co_kwonlyargcount",
        "co_nlocals", "co_stacksize", "co_flags", "co_firstlineno",
        "co_code", "co_consts", "co_names", "co_varnames", "co_freevars",
        "co_cellvars", "co_filename", "co_name", "co_qualname",
        "co_linetable", "co_exceptiontable",
    };
    if (seen(k, code, NULL)) {
        return;
    }
    put_u8(&k->buf, 'K');
    for (size_t i = 0; i < sizeof fields / sizeof fields[0] && !k->refuse;
         i++) {
        PyObject *v = PyObject_GetAttrString(code, fields[i]);
        if (v == NULL) {
            refuse(k);
            return;
        }
        describe_const(k, v);
        Py_DECREF(v);
    }
}

/* The names code loads as attributes (LOAD_ATTR, LOAD_METHOD): those the
 * frontend may look up on a module.  A new tuple, or NULL (refused). */
static PyObject *
attr_names(Keyer *k, PyObject *code)
{
    KlArena a;
    KlBytecode bc;
    KlDiag d;
    memset(&d, 0, sizeof d);
    kl_arena_init(&a);
    PyObject *names = PyObject_GetAttrString(code, "co_names");
    PyObject *set = PySet_New(NULL);
    PyObject *res = NULL;
    if (names == NULL || !PyTuple_Check(names) || set == NULL
        || kl_decode(&a, code, &bc, &d) < 0) {
        goto done;
    }
    for (int32_t i = 0; i < bc.n; i++) {
        int op = bc.insts[i].op, arg = bc.insts[i].arg;
        if ((op == LOAD_ATTR || op == LOAD_METHOD) && arg >= 0
            && arg < PyTuple_GET_SIZE(names)
            && PySet_Add(set, PyTuple_GET_ITEM(names, arg)) < 0) {
            goto done;
        }
    }
    /* sorted, so the key does not depend on set order */
    PyObject *list = PySequence_List(set);
    if (list != NULL && PyList_Sort(list) == 0) {
        res = PyList_AsTuple(list);
    }
    Py_XDECREF(list);
done:
    kl_arena_free(&a);
    Py_XDECREF(names);
    Py_XDECREF(set);
    if (res == NULL) {
        refuse(k);
    }
    return res;
}

/* Looks `name` up as the frontend does (load_global): the function's
 * globals, then its builtins.  A new reference, or NULL (not an error
 * when no Python error is set). */
static PyObject *
lookup_global(PyObject *fn, PyObject *name)
{
    PyObject *g = PyFunction_GET_GLOBALS(fn);
    PyObject *obj = PyDict_GetItemWithError(g, name);
    if (obj != NULL) {
        return Py_NewRef(obj);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *builtins = ((PyFunctionObject *)fn)->func_builtins;
    if (builtins == NULL) {
        return NULL;
    }
    if (PyDict_Check(builtins)) {
        obj = PyDict_GetItemWithError(builtins, name);
        return Py_XNewRef(obj);
    }
    obj = PyObject_GetItem(builtins, name);
    if (obj == NULL && PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
    }
    return obj;
}

/* A function's annotations, by name and repr (kiln reads the entry's
 * through its argument and return types, which the key holds, and no
 * callee's today: kept so that a future reader cannot make stale hits). */
static void
describe_annotations(Keyer *k, PyObject *fn)
{
    PyObject *ann = PyObject_GetAttrString(fn, "__annotations__");
    PyObject *items = ann != NULL && PyDict_Check(ann)
        ? PyDict_Items(ann) : NULL;
    if (items == NULL) {
        Py_XDECREF(ann);
        refuse(k);
        return;
    }
    put_u8(&k->buf, 'A');
    put_u64(&k->buf, (uint64_t)PyList_GET_SIZE(items));
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items) && !k->refuse; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        PyObject *r = PyObject_Repr(PyTuple_GET_ITEM(pair, 1));
        if (r == NULL) {
            refuse(k);
            break;
        }
        put_unicode(k, PyTuple_GET_ITEM(pair, 0));
        put_unicode(k, r);
        Py_DECREF(r);
    }
    Py_DECREF(items);
    Py_DECREF(ann);
}

/* A Python function: module, code, defaults, closure size, annotations,
 * and the value of each of its co_names among its globals and builtins
 * (modules among them described with the attributes its bytecode loads).
 * Only through describe(), which numbers it. */
static void
describe_function(Keyer *k, PyObject *fn)
{
    PyObject *code = PyFunction_GET_CODE(fn);
    PyObject *defaults = PyFunction_GET_DEFAULTS(fn);
    PyObject *closure = PyFunction_GET_CLOSURE(fn);
    put_u8(&k->buf, 'F');
    put_attr_str(k, fn, "__module__");
    describe_code(k, code);
    put_u8(&k->buf, 'd');
    Py_ssize_t nd = defaults != NULL ? PyTuple_GET_SIZE(defaults) : 0;
    put_u64(&k->buf, (uint64_t)nd);
    for (Py_ssize_t i = 0; i < nd && !k->refuse; i++) {
        describe(k, PyTuple_GET_ITEM(defaults, i), NULL);
    }
    put_u64(&k->buf, closure != NULL ? (uint64_t)PyTuple_GET_SIZE(closure)
                                     : 0);
    describe_annotations(k, fn);
    PyObject *names = ((PyCodeObject *)code)->co_names;
    PyObject *attrs = attr_names(k, code);
    for (Py_ssize_t i = 0; attrs != NULL && i < PyTuple_GET_SIZE(names)
                           && !k->refuse; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        PyObject *obj = lookup_global(fn, name);
        if (obj == NULL && PyErr_Occurred()) {
            refuse(k);
            break;
        }
        put_u8(&k->buf, obj != NULL ? 'g' : 'u');
        put_unicode(k, name);
        if (obj != NULL) {
            describe(k, obj, attrs);
            Py_DECREF(obj);
        }
    }
    Py_XDECREF(attrs);
}

/* A module: its name and the value of each attribute in attrs it has. */
static void
describe_module(Keyer *k, PyObject *mod, PyObject *attrs)
{
    put_u8(&k->buf, 'M');
    PyObject *name = PyModule_GetNameObject(mod);
    if (name == NULL) {
        refuse(k);
        return;
    }
    put_unicode(k, name);
    Py_DECREF(name);
    PyObject *dict = PyModule_GetDict(mod);     /* borrowed */
    Py_ssize_t n = attrs != NULL ? PyTuple_GET_SIZE(attrs) : 0;
    for (Py_ssize_t i = 0; i < n && !k->refuse; i++) {
        PyObject *attr = PyTuple_GET_ITEM(attrs, i);
        PyObject *v = dict != NULL ? PyDict_GetItemWithError(dict, attr)
                                   : NULL;
        if (v != NULL) {
            Py_INCREF(v);
        }
        else if (!PyErr_Occurred()) {
            /* module __getattr__, as the frontend's getattr would see */
            v = PyObject_GetAttr(mod, attr);
        }
        if (v == NULL) {
            PyErr_Clear();
            put_u8(&k->buf, 'x');
            put_unicode(k, attr);
            continue;
        }
        put_u8(&k->buf, 'a');
        put_unicode(k, attr);
        describe(k, v, attrs);
        Py_DECREF(v);
    }
}

/* A class (or builtin function) by module and qualified name. */
static void
describe_named(Keyer *k, char tag, PyObject *obj, const char *qualattr)
{
    put_u8(&k->buf, (uint8_t)tag);
    put_attr_str(k, obj, "__module__");
    put_attr_str(k, obj, qualattr);
}

/* Any global or module attribute, as the frontend classifies it; attrs
 * (a tuple or NULL) are the attribute names loaded by the code that
 * reaches obj. */
static void
describe(Keyer *k, PyObject *obj, PyObject *attrs)
{
    if (k->refuse) {
        return;
    }
    if (++k->depth > MAX_DEPTH) {
        refuse(k);
    }
    else if (describe_numpy_scalar(k, obj) || describe_plain(k, obj)) {
        /* done */
    }
    else if (seen(k, obj, PyModule_Check(obj) ? attrs : NULL)) {
        /* a back reference */
    }
    else if (PyModule_Check(obj)) {
        describe_module(k, obj, attrs);
    }
    else if (obj == (PyObject *)&PyRange_Type) {
        put_u8(&k->buf, 'R');
    }
    else if (k->prange != NULL && obj == k->prange) {
        put_u8(&k->buf, 'P');
    }
    else if (PyExceptionClass_Check(obj)) {
        describe_named(k, 'E', obj, "__qualname__");
        if (PyList_Append(k->excs, obj) < 0) {
            refuse(k);
        }
    }
    else if (PyType_Check(obj)) {
        describe_named(k, 'T', obj, "__qualname__");
    }
    else if (PyCFunction_Check(obj)) {
        describe_named(k, 'B', obj, "__name__");
    }
    else if (PyFunction_Check(obj)) {
        describe_function(k, obj);
    }
    else {
        /* a kiln dispatcher (anything with a function `py_func`) is its
         * function; other objects only by type (kiln compiles none) */
        PyObject *pf = PyObject_GetAttrString(obj, "py_func");
        if (pf != NULL && PyFunction_Check(pf)) {
            put_u8(&k->buf, 'D');
            describe(k, pf, NULL);
        }
        else {
            PyErr_Clear();
            describe_named(k, 'O', (PyObject *)Py_TYPE(obj), "__qualname__");
        }
        Py_XDECREF(pf);
    }
    k->depth--;
}

/* A kiln type, structurally. */
static void
describe_type(Buf *b, const KlType *t)
{
    if (t == NULL) {
        put_u8(b, '-');
        return;
    }
    put_u8(b, 'y');
    put_u32(b, (uint32_t)t->kind);
    put_u8(b, t->bits);
    put_u8(b, t->is_signed);
    put_u8(b, t->weak);
    put_u8(b, t->readonly);
    put_u8(b, (uint8_t)t->ndim);
    put_u32(b, (uint32_t)t->layout);
    describe_type(b, t->elem);
}

/* What every entry of this process shares: the cache format, kiln's build
 * (its extension file's identity and version), Python's version and the
 * host code's dependencies.  NULL when they cannot be known.  Computed
 * once (under the GIL). */
static const char *
process_key(void)
{
    static char *key;
    static int failed;
    if (key != NULL || failed) {
        return key;
    }
    failed = 1;
    Dl_info info;
    struct stat st;
    if (dladdr((void *)&kl_cache_compile, &info) == 0
        || info.dli_fname == NULL || stat(info.dli_fname, &st) != 0) {
        return NULL;
    }
    const char *version = "?";
    PyObject *name = PyUnicode_FromString("kiln");
    PyObject *kiln = name != NULL ? PyImport_GetModule(name) : NULL;
    PyObject *v = kiln != NULL ? PyObject_GetAttrString(kiln, "__version__")
                               : NULL;
    if (v != NULL && PyUnicode_Check(v)) {
        version = PyUnicode_AsUTF8(v);
        version = version != NULL ? version : "?";
    }
    char *host = kl_llvm_host_id();
    size_t n = strlen(info.dli_fname) + strlen(version)
               + (host != NULL ? strlen(host) : 0) + 256;
    key = host != NULL ? malloc(n) : NULL;
    if (key != NULL) {
        snprintf(key, n, "kiln cache 1\n%s\n%s %lld %lld.%09ld %llu %llu\n"
                 "Python %s\n%s", version, info.dli_fname,
                 (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                 (long)st.st_mtim.tv_nsec, (unsigned long long)st.st_ino,
                 (unsigned long long)st.st_dev, Py_GetVersion(), host);
        failed = 0;
    }
    free(host);
    Py_XDECREF(v);
    Py_XDECREF(kiln);
    Py_XDECREF(name);
    PyErr_Clear();
    return key;
}

/* kiln.prange when kiln is imported, else NULL (borrowed: the package
 * keeps it alive). */
static PyObject *
find_prange(void)
{
    PyObject *name = PyUnicode_FromString("kiln");
    PyObject *mod = name != NULL ? PyImport_GetModule(name) : NULL;
    PyObject *p = mod != NULL ? PyObject_GetAttrString(mod, "prange") : NULL;
    Py_XDECREF(name);
    Py_XDECREF(mod);
    Py_XDECREF(p);
    PyErr_Clear();
    return p;
}

/* Builds the key of one specialisation into k->buf; 0, or -1 (no cache)
 * with no Python error set. */
static int
key_build(Keyer *k, PyObject *func, const KlType **argtypes, int32_t nargs,
          const KlType *ret_annot, KlOptions options)
{
    const char *pk = process_key();
    k->memo = PyDict_New();
    k->keep = PyList_New(0);
    k->excs = PyList_New(0);
    k->prange = find_prange();
    if (pk == NULL || k->memo == NULL || k->keep == NULL || k->excs == NULL) {
        PyErr_Clear();
        return -1;
    }
    put_cstr(&k->buf, pk);
    put_u8(&k->buf, 'o');
    put_u8(&k->buf, options.fastmath);
    put_u8(&k->buf, options.boundscheck);
    put_u8(&k->buf, options.noalias);
    put_u8(&k->buf, options.stream);
    put_u8(&k->buf, options.target);
    put_u32(&k->buf, (uint32_t)nargs);
    for (int32_t i = 0; i < nargs; i++) {
        describe_type(&k->buf, argtypes[i]);
    }
    describe_type(&k->buf, ret_annot);
    describe(k, func, NULL);
    PyErr_Clear();
    return k->refuse || k->buf.failed ? -1 : 0;
}

static void
keyer_free(Keyer *k)
{
    free(k->buf.p);
    Py_XDECREF(k->memo);
    Py_XDECREF(k->keep);
    Py_XDECREF(k->excs);
}

/* SHA-256 (FIPS 180-4) of p[0..n) as lowercase hex into hex[65]. */
static void
sha256_hex(const char *p, size_t n, char hex[65])
{
    static const uint32_t K[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b,
        0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
        0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7,
        0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
        0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152,
        0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
        0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
        0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
        0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
        0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    };
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
#define ROR(x, r) (((x) >> (r)) | ((x) << (32 - (r))))
    /* the message, a 1 bit, zeros and the bit length fill whole blocks */
    size_t nblocks = (n + 9 + 63) / 64;
    for (size_t bi = 0; bi < nblocks; bi++) {
        uint8_t blk[64];
        for (size_t i = 0; i < 64; i++) {
            size_t at = bi * 64 + i;
            blk[i] = at < n ? (uint8_t)p[at] : at == n ? 0x80 : 0;
        }
        if (bi == nblocks - 1) {
            uint64_t bits = (uint64_t)n * 8;
            for (int i = 0; i < 8; i++) {
                blk[63 - i] = (uint8_t)(bits >> (8 * i));
            }
        }
        uint32_t w[64];
        for (int i = 0; i < 16; i++) {
            w[i] = (uint32_t)blk[4 * i] << 24 | (uint32_t)blk[4 * i + 1] << 16
                   | (uint32_t)blk[4 * i + 2] << 8 | blk[4 * i + 3];
        }
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18)
                          ^ (w[i - 15] >> 3);
            uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19)
                          ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
        uint32_t e = h[4], f = h[5], g = h[6], hh = h[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25))
                          + ((e & f) ^ (~e & g)) + K[i] + w[i];
            uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22))
                          + ((a & b) ^ (a & c) ^ (b & c));
            hh = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
        h[5] += f;
        h[6] += g;
        h[7] += hh;
    }
#undef ROR
    for (int i = 0; i < 8; i++) {
        snprintf(hex + 8 * i, 9, "%08x", (unsigned)h[i]);
    }
}

/* ---- where ----------------------------------------------------------- */

/* Creates directory `path` and its missing parents; 0 when it exists. */
static int
make_dirs(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) {
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
                return -1;
            }
            tmp[i] = c;
        }
    }
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

/* Whether `dir` exists (or could be made) and can be written. */
static int
usable_dir(const char *dir)
{
    return make_dirs(dir) == 0 && access(dir, W_OK | X_OK) == 0;
}

/* The cache directory for func into out[size] (see cache.h); -1 when
 * none is usable. */
static int
cache_dir(PyObject *func, char *out, size_t size)
{
    const char *env = getenv("KILN_CACHE_DIR");
    if (env != NULL && env[0] != '\0') {
        snprintf(out, size, "%s", env);
        return usable_dir(out) == 1 ? 0 : -1;
    }
    PyObject *file = ((PyCodeObject *)PyFunction_GET_CODE(func))->co_filename;
    PyObject *bytes = NULL;
    struct stat st;
    if (PyUnicode_Check(file) && PyUnicode_FSConverter(file, &bytes)) {
        const char *path = PyBytes_AS_STRING(bytes);
        const char *slash = strrchr(path, '/');
        if (path[0] == '/' && slash != NULL && stat(path, &st) == 0
            && S_ISREG(st.st_mode)
            && (size_t)snprintf(out, size, "%.*s/__pycache__/kiln",
                                (int)(slash - path), path) < size
            && usable_dir(out)) {
            Py_DECREF(bytes);
            return 0;
        }
        Py_DECREF(bytes);
    }
    PyErr_Clear();
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (xdg != NULL && xdg[0] == '/') {
        snprintf(out, size, "%s/kiln", xdg);
    }
    else if (home != NULL && home[0] == '/') {
        snprintf(out, size, "%s/.cache/kiln", home);
    }
    else {
        return -1;
    }
    return usable_dir(out) ? 0 : -1;
}

/* The entry file's path: dir/<qualname>.<40 hex>.klc, the qualname
 * reduced to [A-Za-z0-9_.] for people looking at the directory. */
static void
entry_path(PyObject *func, const char *dir, const char *hex, char *out,
           size_t size)
{
    char name[64];
    PyObject *qualname = ((PyFunctionObject *)func)->func_qualname;
    const char *q = PyUnicode_AsUTF8(qualname);
    size_t n = 0;
    for (; q != NULL && q[n] != '\0' && n < sizeof name - 1; n++) {
        char c = q[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                 || (c >= '0' && c <= '9') || c == '_' || c == '.';
        name[n] = ok ? c : '_';
    }
    name[n] = '\0';
    PyErr_Clear();
    snprintf(out, size, "%s/%s.%.40s.klc", dir, n > 0 ? name : "kernel", hex);
}

/* ---- exception classes ------------------------------------------------ */

/* The class `module`.`qualname` found through sys.modules (nothing is
 * imported), provided it is one of the exception classes the key
 * describes (k->excs); a new reference or NULL (no error set). */
static PyObject *
resolve_class(Keyer *k, const char *module, const char *qualname)
{
    if (strstr(qualname, "<locals>") != NULL) {
        return NULL;
    }
    PyObject *name = PyUnicode_FromString(module);
    PyObject *obj = name != NULL ? PyImport_GetModule(name) : NULL;
    Py_XDECREF(name);
    const char *p = qualname;
    while (obj != NULL && *p != '\0') {
        const char *dot = strchr(p, '.');
        size_t len = dot != NULL ? (size_t)(dot - p) : strlen(p);
        PyObject *part = PyUnicode_FromStringAndSize(p, (Py_ssize_t)len);
        PyObject *next = part != NULL ? PyObject_GetAttr(obj, part) : NULL;
        Py_XDECREF(part);
        Py_DECREF(obj);
        obj = next;
        p += len + (dot != NULL);
    }
    int known = 0;
    for (Py_ssize_t i = 0; obj != NULL && i < PyList_GET_SIZE(k->excs); i++) {
        known |= PyList_GET_ITEM(k->excs, i) == obj;
    }
    if (!known) {
        Py_XDECREF(obj);
        obj = NULL;
    }
    PyErr_Clear();
    return obj;
}

/* Module and qualified name of class cls into *module, *qualname (new
 * UTF-8 owned by the returned tuple of two str); NULL when cls cannot be
 * found again by them. */
static PyObject *
class_names(Keyer *k, PyObject *cls, const char **module,
            const char **qualname)
{
    PyObject *m = PyObject_GetAttrString(cls, "__module__");
    PyObject *q = PyObject_GetAttrString(cls, "__qualname__");
    PyObject *pair = NULL;
    if (m != NULL && q != NULL && PyUnicode_Check(m) && PyUnicode_Check(q)) {
        *module = PyUnicode_AsUTF8(m);
        *qualname = PyUnicode_AsUTF8(q);
        if (*module != NULL && *qualname != NULL) {
            PyObject *back = resolve_class(k, *module, *qualname);
            if (back == cls) {
                pair = PyTuple_Pack(2, m, q);
            }
            Py_XDECREF(back);
        }
    }
    Py_XDECREF(m);
    Py_XDECREF(q);
    PyErr_Clear();
    return pair;
}

/* ---- entries ----------------------------------------------------------- */

/* Reads p[0..n) field by field; `bad` once a read ran past the end. */
typedef struct Reader {
    const char *p;
    size_t n, pos;
    int bad;
} Reader;

static const void *
take(Reader *r, size_t n)
{
    if (r->bad || n > r->n - r->pos) {
        r->bad = 1;
        return NULL;
    }
    const void *x = r->p + r->pos;
    r->pos += n;
    return x;
}

static uint64_t
take_u64(Reader *r)
{
    uint64_t v = 0;
    const void *x = take(r, 8);
    if (x != NULL) {
        memcpy(&v, x, 8);
    }
    return v;
}

static uint32_t
take_u32(Reader *r)
{
    uint32_t v = 0;
    const void *x = take(r, 4);
    if (x != NULL) {
        memcpy(&v, x, 4);
    }
    return v;
}

static uint8_t
take_u8(Reader *r)
{
    const uint8_t *x = take(r, 1);
    return x != NULL ? *x : 0;
}

/* A str field as a NUL-terminated malloc'ed copy, or NULL (r->bad set
 * when malformed). */
static char *
take_str(Reader *r)
{
    uint64_t n = take_u64(r);
    const char *s = take(r, n);
    if (s == NULL || memchr(s, '\0', n) != NULL) {
        r->bad = 1;
        return NULL;
    }
    char *c = malloc(n + 1);
    if (c == NULL) {
        r->bad = 1;
        return NULL;
    }
    memcpy(c, s, n);
    c[n] = '\0';
    return c;
}

/* The return type stored as (kind, bits, signed, weak), or NULL when it is
 * not a type an entry can return. */
static const KlType *
stored_type(uint8_t kind, uint8_t bits, uint8_t is_signed, uint8_t weak)
{
    const KlType *t = NULL;
    switch (kind) {
    case KL_T_NONE: t = kl_none; break;
    case KL_T_VOID: t = kl_void; break;
    case KL_T_BOOL: t = weak ? kl_pybool : kl_bool; break;
    case KL_T_INT: t = weak ? kl_pyint : kl_type_int(bits, is_signed); break;
    case KL_T_FLOAT: t = weak ? kl_pyfloat : kl_type_float(bits); break;
    case KL_T_COMPLEX:
        t = weak ? kl_pycomplex : kl_type_complex(bits);
        break;
    default: return NULL;
    }
    if (t == NULL || (uint8_t)t->kind != kind || t->weak != weak
        || (kind >= KL_T_INT && (t->bits != bits
                                 || t->is_signed != is_signed))) {
        return NULL;
    }
    return t;
}

/* Reads the whole file at path (malloc'ed into *data, *size); -1 when it
 * cannot be read. */
static int
read_file(const char *path, char **data, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0
        || (size_t)st.st_size > MAX_ENTRY_SIZE) {
        close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *p = malloc(n);
    while (p != NULL && got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) {
                continue;
            }
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (p == NULL || got != n) {
        free(p);
        return -1;
    }
    *data = p;
    *size = n;
    return 0;
}

/* Parses the raise table of an entry into c (a reference to each user
 * class); -1 on anything malformed or a class that cannot be found. */
static int
read_raises(Keyer *k, Reader *r, KlCompiled *c)
{
    uint32_t n = take_u32(r);
    if (r->bad || n > r->n) {
        return -1;
    }
    c->raises = calloc((size_t)n + 1, sizeof(KlRaiseSite));
    if (c->raises == NULL) {
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        KlRaiseSite s = {0};
        s.kind = (KlExcKind)take_u32(r);
        s.line = (int)take_u32(r);
        char *msg = take_str(r);
        char *mod = take_str(r);
        char *qual = take_str(r);
        /* a user raise names its class; kiln's own kinds name none */
        int has_class = !r->bad && mod[0] != '\0';
        int ok = !r->bad && (uint32_t)s.kind <= KL_EXC_USER
                 && (s.kind == KL_EXC_USER) == has_class;
        if (ok && has_class) {
            s.exc_class = resolve_class(k, mod, qual);
            ok = s.exc_class != NULL;
        }
        free(mod);
        free(qual);
        if (!ok) {
            free(msg);
            return -1;
        }
        s.msg = msg;
        c->raises[c->nraises++] = s;
    }
    return 0;
}

/* The entry at path for key k->buf, entry symbol `name`, linked and ready
 * to run; NULL (a miss, no error set) when it is absent, differs,
 * is damaged or cannot be linked. */
static KlCompiled *
entry_load(Keyer *k, const char *path, const char *name)
{
    char *data;
    size_t size;
    if (read_file(path, &data, &size) < 0) {
        return NULL;
    }
    KlCompiled *c = NULL;
    Reader r = {data, size, 0, 0};
    uint64_t sum = 0;
    if (size < 16 || memcmp(data, MAGIC, 8) != 0) {
        goto miss;
    }
    memcpy(&sum, data + size - 8, 8);
    if (sum != fnv1a(data, size - 8)) {
        goto miss;
    }
    r.n = size - 8;
    take(&r, 8);
    uint64_t klen = take_u64(&r);
    const char *key = take(&r, klen);
    char *sym = take_str(&r);
    int same = key != NULL && klen == k->buf.n
               && memcmp(key, k->buf.p, klen) == 0 && sym != NULL
               && strcmp(sym, name) == 0;
    free(sym);
    if (!same) {
        goto miss;
    }
    uint8_t kind = take_u8(&r), bits = take_u8(&r), sgn = take_u8(&r);
    uint8_t weak = take_u8(&r);
    uint64_t streams = take_u64(&r);
    c = calloc(1, sizeof(KlCompiled));
    if (c == NULL || r.bad
        || (c->ret_type = stored_type(kind, bits, sgn, weak)) == NULL
        || read_raises(k, &r, c) < 0) {
        goto miss;
    }
    c->stream_arrays = streams;
    uint64_t osize = take_u64(&r);
    const void *obj = take(&r, osize);
    if (obj == NULL || r.pos != r.n) {
        goto miss;
    }
    KlDiag d;
    memset(&d, 0, sizeof d);
    if ((c->entry = kl_llvm_load_object(name, obj, osize, &d)) == NULL) {
        goto miss;
    }
    free(data);
    return c;
miss:
    kl_compiled_free(c);
    free(data);
    PyErr_Clear();
    return NULL;
}

/* Serialises compiled code c (object obj) for key k->buf; -1 when c has
 * something an entry cannot hold (a return type it cannot name, a raised
 * class the key does not describe or that cannot be found by name). */
static int
entry_bytes(Keyer *k, const KlCompiled *c, const char *name,
            const KlObjCode *obj, Buf *b)
{
    const KlType *t = c->ret_type;
    if (t == NULL || stored_type((uint8_t)t->kind, t->bits, t->is_signed,
                                 t->weak) != t) {
        return -1;
    }
    put(b, MAGIC, 8);
    put_str(b, k->buf.p, k->buf.n);
    put_cstr(b, name);
    put_u8(b, (uint8_t)t->kind);
    put_u8(b, t->bits);
    put_u8(b, t->is_signed);
    put_u8(b, t->weak);
    put_u64(b, c->stream_arrays);
    put_u32(b, (uint32_t)c->nraises);
    for (int32_t i = 0; i < c->nraises; i++) {
        const KlRaiseSite *s = &c->raises[i];
        put_u32(b, (uint32_t)s->kind);
        put_u32(b, (uint32_t)s->line);
        put_cstr(b, s->msg != NULL ? s->msg : "");
        if (s->exc_class == NULL) {
            if (s->kind == KL_EXC_USER) {
                return -1;
            }
            put_cstr(b, "");
            put_cstr(b, "");
            continue;
        }
        const char *module = NULL, *qualname = NULL;
        PyObject *keep = class_names(k, s->exc_class, &module, &qualname);
        if (keep == NULL || s->kind != KL_EXC_USER) {
            Py_XDECREF(keep);
            return -1;
        }
        put_cstr(b, module);
        put_cstr(b, qualname);
        Py_DECREF(keep);
    }
    put_str(b, obj->data, obj->size);
    put_u64(b, fnv1a(b->p, b->n));
    return b->failed ? -1 : 0;
}

/* Writes p[0..n) to fd; -1 on failure. */
static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Stores compiled code c as the entry at path: written to a temporary
 * file in the same directory, then renamed over path.  Failures are
 * silent (the entry is simply not kept). */
static void
entry_store(Keyer *k, const char *path, const KlCompiled *c,
            const char *name, const KlObjCode *obj)
{
    static unsigned long counter;
    Buf b = {0};
    char tmp[4300];
    if (entry_bytes(k, c, name, obj, &b) < 0) {
        free(b.p);
        PyErr_Clear();
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.%ld.%lu.tmp", path, (long)getpid(),
             ++counter);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
        int ok = write_all(fd, b.p, b.n) == 0;
        ok = close(fd) == 0 && ok;
        if (!ok || rename(tmp, path) != 0) {
            unlink(tmp);
        }
    }
    free(b.p);
}

/* ---- the entry point -------------------------------------------------- */

KlCompiled *
kl_cache_compile(void *func, const KlType **argtypes, int32_t nargs,
                 const KlType *ret_annot, KlOptions options, int *hit,
                 KlDiag *d)
{
    Keyer k;
    char hex[65], dir[4096], path[4200], name[48];
    memset(&k, 0, sizeof k);
    *hit = 0;
    if (options.target != 0 || !PyFunction_Check((PyObject *)func)
        || key_build(&k, func, argtypes, nargs, ret_annot, options) < 0
        || cache_dir(func, dir, sizeof dir) < 0) {
        keyer_free(&k);
        PyErr_Clear();
        return kl_compile(func, argtypes, nargs, ret_annot, options, 0, d);
    }
    sha256_hex(k.buf.p, k.buf.n, hex);
    entry_path(func, dir, hex, path, sizeof path);
    snprintf(name, sizeof name, "kl_c_%.32s", hex);
    KlCompiled *c = entry_load(&k, path, name);
    if (c != NULL) {
        *hit = 1;
        keyer_free(&k);
        return c;
    }
    KlObjCode obj;
    c = kl_compile_object(func, argtypes, nargs, ret_annot, options, name,
                          &obj, d);
    if (c != NULL) {
        entry_store(&k, path, c, name, &obj);
        free(obj.data);
    }
    else if (d->kind == KL_DIAG_INTERNAL) {
        /* e.g. LLVM refused to link the object (a damaged entry may have
         * left its name half-defined): compile the ordinary way, whose
         * own failure, if any, is the one to report */
        memset(d, 0, sizeof *d);
        PyErr_Clear();
        c = kl_compile(func, argtypes, nargs, ret_annot, options, 0, d);
    }
    keyer_free(&k);
    return c;
}
