/* test_spirv.c: standalone test of the SPIR-V backend (not part of the
 * build).  Embeds Python, compiles the kernels of the source below through
 * the real front half of the pipeline (frontend, infer, bounds, parallel,
 * lower, verify), emits a SPIR-V kernel for each (the serial function, or
 * each pfor body) plus a few built by hand, and runs
 * `spirv-val --target-env vulkan1.1` on every module.  Cases marked
 * "error" must fail with a CompileError instead.
 *
 *   S=csrc; gcc -std=c11 -O1 -g -I$S $(python3-config --includes) \
 *     -o /tmp/test_spirv $S/backend/spirv/test_spirv.c \
 *     $S/backend/spirv/emit.c $S/backend/spirv/builder.c \
 *     $S/passes/structure.c $S/passes/infer.c $S/passes/bounds.c \
 *     $S/passes/parallel.c $S/passes/lower.c $S/passes/lower_builtins.c \
 *     $S/frontend/build.c $S/frontend/decode.c $S/ir/ir.c $S/types.c \
 *     $S/kiln.c $(python3-config --ldflags --embed) -lvulkan -lm -lpthread
 *   XDG_RUNTIME_DIR=/tmp /tmp/test_spirv [-v] [name]
 *        (-v prints IR, structure tree and disassembly)
 *
 * Modules are written to /tmp/kiln_spirv_test/<name>.spv.  When a Vulkan
 * device is present (lavapipe), each serial kernel also runs on 8 random
 * inputs and each pfor kernel whose captured values are parameters or
 * constants runs with chunk sizes 1 and 2; results, arrays written and
 * raised exceptions are compared with the Python function.  Debug aid:
 * KILN_TEST_SPV=<file.spv> runs that module instead of the emitted one
 * and prints the status words.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../compile.h"
#include "../../passes/structure.h"
#include "kernel.h"

static const char *SOURCE =
    "import math\n"
    "from kiln import prange\n"
    "def arith(a, b):\n"
    "    c = a + b - a * b\n"
    "    if b != 0:\n"
    "        c = c + a // b + a % b\n"
    "    c = c ^ (a & b) | (a >> 1) << 2\n"
    "    return c\n"
    "def farith(a, b):\n"
    "    c = a * b + a / b - -a\n"
    "    if a < b:\n"
    "        c = c + a // b + a % b\n"
    "    return c\n"
    "def mixed(a, b, x):\n"
    "    return a + b * x\n"
    "def loop(n):\n"
    "    s = 0\n"
    "    t = 1.0\n"
    "    for i in range(n):\n"
    "        s += i * i\n"
    "        t = t * 0.5\n"
    "    return s + t\n"
    "def ifelse(a, b):\n"
    "    if a > b:\n"
    "        r = a - b\n"
    "    elif a == b:\n"
    "        r = 0\n"
    "    else:\n"
    "        r = b - a\n"
    "    return r if r < 100 else 100\n"
    "def brk(n, m):\n"
    "    s = 0\n"
    "    for i in range(n):\n"
    "        if i == m:\n"
    "            continue\n"
    "        if i > 2 * m:\n"
    "            break\n"
    "        s += i\n"
    "    return s\n"
    "def forelse(a, x):\n"
    "    for i in range(a.shape[0]):\n"
    "        if a[i] == x:\n"
    "            break\n"
    "    else:\n"
    "        return -1\n"
    "    return i\n"
    "def nested(a):\n"
    "    s = 0.0\n"
    "    for i in range(a.shape[0]):\n"
    "        for j in range(a.shape[1]):\n"
    "            if a[i, j] < 0:\n"
    "                break\n"
    "            if a[i, j] == 0:\n"
    "                continue\n"
    "            s += a[i, j]\n"
    "    return s\n"
    "def shortc(a, b, c):\n"
    "    if a > 0 and b > 0 or c:\n"
    "        return 1\n"
    "    x = a < b or b == 3\n"
    "    return 2 if x else 3\n"
    "def loopsc(n):\n"
    "    s = 0\n"
    "    for i in range(n):\n"
    "        if i % 3 == 0 and i % 5 == 0:\n"
    "            s += 1\n"
    "            if s > 10:\n"
    "                continue\n"
    "        else:\n"
    "            s += 2\n"
    "        s += 3\n"
    "    return s\n"
    "def whiles(n):\n"
    "    i = 0\n"
    "    while True:\n"
    "        i += 1\n"
    "        if i * i > n:\n"
    "            break\n"
    "    while i > 0 and n > 0:\n"
    "        i -= 2\n"
    "    return i\n"
    "def early(a):\n"
    "    for i in range(a.shape[0]):\n"
    "        if a[i] < 0:\n"
    "            return i\n"
    "    return -1\n"
    "def raises(a, i):\n"
    "    if i > 100:\n"
    "        raise ValueError('too big')\n"
    "    return a[i] // a[i + 1]\n"
    "def copy1(a, b):\n"
    "    for i in range(a.shape[0]):\n"
    "        b[i] = a[i] * 2\n"
    "def copy2(a, b):\n"
    "    for i in range(a.shape[0]):\n"
    "        for j in range(a.shape[1]):\n"
    "            b[i, j] = a[-i - 1, j] + 1\n"
    "def boolarr(a, b):\n"
    "    n = 0\n"
    "    for i in range(a.shape[0]):\n"
    "        b[i] = not a[i]\n"
    "        if a[i]:\n"
    "            n += 1\n"
    "    return n\n"
    "def cmul(a, b):\n"
    "    return a * b + a.conjugate() - b.real\n"
    "def cmularr(a, b, c):\n"
    "    for i in range(a.shape[0]):\n"
    "        c[i] = a[i] * b[i]\n"
    "def fmath(x):\n"
    "    return math.sqrt(abs(x)) + math.floor(x) + math.fabs(x)\n"
    "def fsin(x):\n"
    "    return math.sin(x)\n"
    "def helper(a, i):\n"
    "    if i < 0:\n"
    "        raise IndexError('neg')\n"
    "    return a[i] * 2.0\n"
    "def caller(a, b):\n"
    "    s = 0.0\n"
    "    for i in range(a.shape[0]):\n"
    "        s += helper(a, i) + helper(b, i)\n"
    "    return s\n"
    "def par(a, b):\n"
    "    for i in prange(a.shape[0]):\n"
    "        b[i] = a[i] * a[i]\n"
    "def parsum(a):\n"
    "    s = 0.0\n"
    "    for i in prange(a.shape[0]):\n"
    "        s += a[i]\n"
    "    return s\n"
    "def par2(a):\n"
    "    for i in prange(a.shape[0]):\n"
    "        for j in range(a.shape[1]):\n"
    "            if a[i, j] < 0:\n"
    "                break\n"
    "            a[i, j] = math.sqrt(a[i, j])\n"
    "def rec(n) -> int:\n"
    "    if n < 2:\n"
    "        return n\n"
    "    return rec(n - 1) + rec(n - 2)\n"
    "import numpy as np, struct, random\n"
    "_NP = {'bool': np.bool_, 'i8': np.int8, 'i16': np.int16, 'i32': np.int32,\n"
    "       'i64': np.int64, 'u8': np.uint8, 'u16': np.uint16, 'u32': np.uint32,\n"
    "       'u64': np.uint64, 'f32': np.float32, 'f64': np.float64,\n"
    "       'c64': np.complex64, 'c128': np.complex128}\n"
    "def _scalar(dt, rnd):\n"
    "    if dt == np.bool_:\n"
    "        return rnd.random() < 0.5\n"
    "    if np.issubdtype(dt, np.complexfloating):\n"
    "        return dt(complex(rnd.uniform(-4, 4), rnd.uniform(-4, 4)))\n"
    "    if np.issubdtype(dt, np.floating):\n"
    "        return dt(rnd.choice([rnd.uniform(-8, 8), rnd.randint(-5, 5)]))\n"
    "    info = np.iinfo(dt)\n"
    "    lo, hi = max(info.min, -40), min(info.max, 40)\n"
    "    return dt(rnd.randint(lo, hi))\n"
    "def _gen(spec, seed):\n"
    "    rnd = random.Random(seed)\n"
    "    args = []\n"
    "    for t in spec.split():\n"
    "        name, _, dims = t.partition('[')\n"
    "        dt = _NP[name]\n"
    "        if not dims:\n"
    "            args.append(_scalar(dt, rnd))\n"
    "            continue\n"
    "        nd = dims.count(',') + 1\n"
    "        shape = tuple(rnd.randint(1, 6) for _ in range(nd))\n"
    "        big = tuple(2 * n + 1 for n in shape)\n"
    "        base = np.array([_scalar(dt, rnd) for _ in range(int(np.prod(big)))], dt).reshape(big)\n"
    "        if '::1' in dims:\n"
    "            a = np.ascontiguousarray(base[tuple(slice(0, n) for n in shape)])\n"
    "        else:\n"
    "            a = base[tuple(slice(2 * n - 1, None, -2) if k == 0 else slice(1, None, 2) for k, n in enumerate(shape))]\n"
    "        args.append(a)\n"
    "    return args\n"
    "def _pack(spec, args):\n"
    "    params, bufs = b'', []\n"
    "    for a in args:\n"
    "        if isinstance(a, np.ndarray):\n"
    "            base = a if a.base is None else a.base\n"
    "            isz = a.itemsize\n"
    "            off = (a.__array_interface__['data'][0] - base.__array_interface__['data'][0]) // isz\n"
    "            params += struct.pack('<q', off)\n"
    "            params += struct.pack('<%dq' % a.ndim, *a.shape)\n"
    "            params += struct.pack('<%dq' % a.ndim, *[s // isz for s in a.strides])\n"
    "            bufs.append(bytearray(base.tobytes()))\n"
    "        else:\n"
    "            b = np.asarray(a).tobytes()\n"
    "            params += b + bytes((-len(b)) % 8)\n"
    "    return bytes(params), bufs\n"
    "def _expect(fn, args):\n"
    "    cp = [a.copy() if isinstance(a, np.ndarray) else a for a in args]\n"
    "    try:\n"
    "        return fn(*cp), cp\n"
    "    except Exception as ex:\n"
    "        return ex, cp\n"
    "def _close(x, y):\n"
    "    x, y = complex(x), complex(y)\n"
    "    return x == y or abs(x - y) <= 1e-5 * max(1.0, abs(x), abs(y)) or (x != x and y != y)\n"
    "def _check(fn, spec, args, bufs, exp, cpargs, status, rtype, exc):\n"
    "    site = struct.unpack_from('<I', status, 0)[0]\n"
    "    if isinstance(exp, Exception):\n"
    "        if site == 0:\n"
    "            return 'expected %r, kernel did not raise' % exp\n"
    "        if type(exp).__name__ != exc:\n"
    "            return 'expected %r, kernel raised %s' % (exp, exc)\n"
    "        return None\n"
    "    if site != 0:\n"
    "        return 'kernel raised %s, expected %r' % (exc, exp)\n"
    "    if rtype:\n"
    "        got = np.frombuffer(status[32:48], _NP[rtype])[0]\n"
    "        if not _close(got, exp):\n"
    "            return 'result %r, expected %r' % (got, exp)\n"
    "    k = 0\n"
    "    for a, c in zip(args, cpargs):\n"
    "        if isinstance(a, np.ndarray):\n"
    "            base = a if a.base is None else a.base\n"
    "            tmp = np.frombuffer(bytes(bufs[k]), a.dtype).reshape(base.shape).copy()\n"
    "            k += 1\n"
    "            got = _view_like(tmp, a, base)\n"
    "            if not all(_close(x, y) for x, y in zip(got.ravel(), c.ravel())):\n"
    "                return 'array %d: %r, expected %r' % (k - 1, got, c)\n"
    "    return None\n"
    "def _view_like(newbase, a, base):\n"
    "    off = a.__array_interface__['data'][0] - base.__array_interface__['data'][0]\n"
    "    return np.ndarray(a.shape, a.dtype, newbase, off, a.strides)\n";

/* A test: function, argument types, and what to expect. */
typedef struct Case {
    const char *name;       /* unique name of the case */
    const char *func;       /* Python function */
    const char *types;      /* space-separated: i64 f32[:] f64[:,::1] ... */
    int expect_error;       /* a CompileError is expected */
} Case;

static const Case CASES[] = {
    {"arith_i8", "arith", "i8 i8", 0},
    {"arith_i16", "arith", "i16 i16", 0},
    {"arith_i32", "arith", "i32 i32", 0},
    {"arith_i64", "arith", "i64 i64", 0},
    {"arith_u8", "arith", "u8 u8", 0},
    {"arith_u16", "arith", "u16 u16", 0},
    {"arith_u32", "arith", "u32 u32", 0},
    {"arith_u64", "arith", "u64 u64", 0},
    {"arith_bool", "arith", "bool bool", 0},
    {"farith_f32", "farith", "f32 f32", 0},
    {"farith_f64", "farith", "f64 f64", 0},
    {"mixed", "mixed", "i8 u16 f32", 0},
    {"loop", "loop", "i64", 0},
    {"ifelse", "ifelse", "i32 i32", 0},
    {"brk", "brk", "i64 i64", 0},
    {"forelse", "forelse", "f64[:] f64", 0},
    {"nested", "nested", "f32[:,:]", 0},
    {"nested_c", "nested", "f32[:,::1]", 0},
    {"shortc", "shortc", "i64 i64 bool", 0},
    {"loopsc", "loopsc", "i64", 0},
    {"whiles", "whiles", "i64", 0},
    {"early", "early", "i16[:]", 0},
    {"raises", "raises", "i64[:] i64", 0},
    {"copy1_f32", "copy1", "f32[:] f32[:]", 0},
    {"copy1_u8", "copy1", "u8[::1] i32[::1]", 0},
    {"copy2", "copy2", "f64[:,:] f64[:,:]", 0},
    {"copy2_c", "copy2", "i32[:,::1] i64[:,::1]", 0},
    {"boolarr", "boolarr", "bool[:] bool[:]", 0},
    {"cmul64", "cmul", "c64 c64", 0},
    {"cmul128", "cmul", "c128 c128", 0},
    {"cmularr", "cmularr", "c64[:] c64[:] c64[:]", 0},
    {"fmath", "fmath", "f64", 0},
    {"caller", "caller", "f32[:] f32[::1]", 0},
    {"par", "par", "f32[:] f32[:]", 0},
    {"parsum", "parsum", "f64[:]", 0},
    {"par2", "par2", "f32[:,:]", 0},
    {"fsin_f64", "fsin", "f64", 1},
    {"rec", "rec", "i64", 1},
};

static int verbose;
static int failures;
static PyObject *NS;    /* globals of the kernel source */

/* ---- types from text ---------------------------------------------------- */

/* One type: a scalar name, or "elem[:,:]" / "elem[:,::1]" arrays. */
static const KlType *
parse_type(const char *s)
{
    char name[32];
    const char *br = strchr(s, '[');
    size_t n = br ? (size_t)(br - s) : strlen(s);
    if (n >= sizeof(name)) {
        return NULL;
    }
    memcpy(name, s, n);
    name[n] = '\0';
    const KlType *t = kl_type_from_name(name);
    if (t == NULL || br == NULL) {
        return t;
    }
    int ndim = 1;
    for (const char *p = br; *p; p++) {
        ndim += *p == ',';
    }
    KlLayout lay = strstr(br, "::1") ? KL_LAYOUT_C : KL_LAYOUT_ANY;
    return kl_type_array(t, ndim, lay, 0);
}

/* ---- a tiny driver (compile.c without LLVM) ------------------------------ */

typedef struct Spec {
    void *fn;
    const KlType *types[8];
    int32_t n, index;
} Spec;

static Spec specs[32];
static int nspecs;

static int32_t
resolve(KlModule *m, void *callee, const KlType **argtypes, int32_t nargs,
        int line, KlDiag *d)
{
    for (int i = 0; i < nspecs; i++) {
        if (specs[i].fn == callee && specs[i].n == nargs
            && memcmp(specs[i].types, argtypes,
                      sizeof(KlType *) * (size_t)nargs) == 0) {
            if (specs[i].index < 0 || m->funcs[specs[i].index]->ret_type
                                          == NULL) {
                return kl_compile_error(d, line, "recursive call");
            }
            return specs[i].index;
        }
    }
    if (nspecs == 32 || nargs > 8) {
        return kl_compile_error(d, line, "too many specialisations");
    }
    Spec *s = &specs[nspecs++];
    s->fn = callee;
    s->n = nargs;
    s->index = -1;
    memcpy(s->types, argtypes, sizeof(KlType *) * (size_t)nargs);
    KlFunc *f = kl_build_ir(m, callee, d);
    if (f == NULL) {
        return -1;
    }
    const KlType **pt = kl_arena_alloc(&m->arena, sizeof(KlType *) * 8);
    memcpy(pt, argtypes, sizeof(KlType *) * (size_t)nargs);
    f->param_types = pt;
    s->index = m->nfuncs - 1;
    /* a return annotation `-> int` types recursive calls */
    PyObject *ann = PyObject_GetAttrString(callee, "__annotations__");
    PyObject *rt = ann ? PyDict_GetItemString(ann, "return") : NULL;
    if (rt == (PyObject *)&PyLong_Type) {
        f->ret_type = kl_i64;
    }
    Py_XDECREF(ann);
    PyErr_Clear();
    if (kl_infer(f, d) < 0) {
        return -1;
    }
    return s->index;
}

/* Compiles Python function `func` for `types` down to lowered IR. */
static KlModule *
compile_case(const Case *c, KlDiag *d)
{
    const KlType *types[8];
    int32_t n = 0;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", c->types);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        types[n] = parse_type(tok);
        if (types[n] == NULL) {
            kl_internal_error(d, "bad type %s", tok);
            return NULL;
        }
        n++;
    }
    PyObject *fn = PyDict_GetItemString(NS, c->func);
    if (fn == NULL) {
        kl_internal_error(d, "no function %s", c->func);
        return NULL;
    }
    KlOptions opt = {.fastmath = 0, .boundscheck = 1};
    KlModule *m = kl_module_new(opt);
    m->resolve_call = resolve;
    nspecs = 0;
    if (resolve(m, fn, types, n, 0, d) < 0) {
        return m;
    }
    for (int32_t i = 0; i < m->nfuncs; i++) {
        KlFunc *f = m->funcs[i];
        if (kl_bounds(f, d) < 0 || kl_parallel(f, d) < 0
            || kl_lower(f, d) < 0 || kl_verify(f, 1, d) < 0) {
            return m;
        }
    }
    return m;
}

/* ---- checking a module ----------------------------------------------- */

static int
run(const char *cmd)
{
    int rc = system(cmd);
    return rc;
}

/* Writes k to /tmp/kiln_spirv_test/<name>.spv and validates it. */
static void
validate(const char *name, const KlSpirv *k)
{
    char path[256], cmd[600];
    snprintf(path, sizeof(path), "/tmp/kiln_spirv_test/%s.spv", name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fwrite(k->words, 4, k->nwords, fp) != k->nwords) {
        printf("FAIL %s: cannot write %s\n", name, path);
        failures++;
        if (fp) {
            fclose(fp);
        }
        return;
    }
    fclose(fp);
    snprintf(cmd, sizeof(cmd), "spirv-val --target-env vulkan1.1 %s", path);
    if (run(cmd) != 0) {
        printf("FAIL %s: spirv-val rejected %s\n", name, path);
        failures++;
        return;
    }
    printf("ok   %-14s %5zu words, %d array bindings, params %u bytes, "
           "features 0x%x\n", name, k->nwords, (int)k->nbindings,
           k->params_bytes, k->features);
    if (verbose) {
        snprintf(cmd, sizeof(cmd), "spirv-dis --raw-id %s", path);
        run(cmd);
    }
}

static void
show_structure(KlFunc *f)
{
    KlStructure s;
    KlDiag d = {0};
    if (kl_structure(f, &s, &d) < 0) {
        printf("   (structure failed: %s)\n", d.msg);
        return;
    }
    char *t = kl_structure_print(f, &s);
    printf("%s", t ? t : "");
    free(t);
}


/* ---- running kernels on a Vulkan device (lavapipe in CI) ------------- */

#include <vulkan/vulkan.h>

static struct {
    int tried, ok;
    VkInstance inst;
    VkPhysicalDevice pd;
    VkDevice dev;
    VkQueue q;
    uint32_t qf;
    VkCommandPool pool;
} vk;

/* Opens the first Vulkan device with every feature kernels may need;
 * 0 when there is none (execution tests are then skipped). */
static int
vk_init(void)
{
    if (vk.tried) {
        return vk.ok;
    }
    vk.tried = 1;
    VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.apiVersion = VK_API_VERSION_1_2;
    VkInstanceCreateInfo ici = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    ici.pApplicationInfo = &app;
    if (vkCreateInstance(&ici, NULL, &vk.inst) != VK_SUCCESS) {
        return 0;
    }
    uint32_t n = 1;
    if (vkEnumeratePhysicalDevices(vk.inst, &n, &vk.pd) < 0 || n == 0) {
        return 0;
    }
    VkQueueFamilyProperties qp[8];
    uint32_t nq = 8;
    vkGetPhysicalDeviceQueueFamilyProperties(vk.pd, &nq, qp);
    for (vk.qf = 0; vk.qf < nq; vk.qf++) {
        if (qp[vk.qf].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            break;
        }
    }
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qci.queueFamilyIndex = vk.qf;
    qci.queueCount = 1;
    qci.pQueuePriorities = &prio;
    VkPhysicalDeviceVulkan12Features f12 = {
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    f12.storageBuffer8BitAccess = VK_TRUE;
    f12.shaderInt8 = VK_TRUE;
    VkPhysicalDeviceVulkan11Features f11 = {
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
    f11.storageBuffer16BitAccess = VK_TRUE;
    f11.pNext = &f12;
    VkPhysicalDeviceFeatures2 f = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    f.features.shaderInt64 = VK_TRUE;
    f.features.shaderFloat64 = VK_TRUE;
    f.features.shaderInt16 = VK_TRUE;
    f.pNext = &f11;
    VkDeviceCreateInfo dci = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    dci.pNext = &f;
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    if (vkCreateDevice(vk.pd, &dci, NULL, &vk.dev) != VK_SUCCESS) {
        return 0;
    }
    vkGetDeviceQueue(vk.dev, vk.qf, 0, &vk.q);
    VkCommandPoolCreateInfo pci = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
    pci.queueFamilyIndex = vk.qf;
    if (vkCreateCommandPool(vk.dev, &pci, NULL, &vk.pool) != VK_SUCCESS) {
        return 0;
    }
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(vk.pd, &props);
    printf("running kernels on %s\n", props.deviceName);
    vk.ok = 1;
    return 1;
}

/* Runs kernel k once (groups workgroups) over buffers data[0..n) of
 * sizes[0..n) (binding i = data[i]), copying them in and back out. */
static int
vk_run(const KlSpirv *k, unsigned char **data, const size_t *sizes, int n,
       uint32_t groups)
{
    VkBuffer buf[32];
    VkDeviceMemory mem[32];
    void *map[32];
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(vk.pd, &mp);
    for (int i = 0; i < n; i++) {
        VkBufferCreateInfo bci = {VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
        bci.size = sizes[i] < 16 ? 16 : sizes[i];
        bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
        vkCreateBuffer(vk.dev, &bci, NULL, &buf[i]);
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(vk.dev, buf[i], &req);
        uint32_t want = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT
                        | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, t;
        for (t = 0; t < mp.memoryTypeCount; t++) {
            if ((req.memoryTypeBits & (1u << t))
                && (mp.memoryTypes[t].propertyFlags & want) == want) {
                break;
            }
        }
        VkMemoryAllocateInfo mai = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
        mai.allocationSize = req.size;
        mai.memoryTypeIndex = t;
        vkAllocateMemory(vk.dev, &mai, NULL, &mem[i]);
        vkBindBufferMemory(vk.dev, buf[i], mem[i], 0);
        vkMapMemory(vk.dev, mem[i], 0, VK_WHOLE_SIZE, 0, &map[i]);
        memset(map[i], 0, bci.size);
        memcpy(map[i], data[i], sizes[i]);
    }
    VkDescriptorSetLayoutBinding lb[32];
    for (int i = 0; i < n; i++) {
        lb[i] = (VkDescriptorSetLayoutBinding){
            (uint32_t)i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1,
            VK_SHADER_STAGE_COMPUTE_BIT, NULL};
    }
    VkDescriptorSetLayoutCreateInfo dl = {
        VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
    dl.bindingCount = (uint32_t)n;
    dl.pBindings = lb;
    VkDescriptorSetLayout dsl;
    vkCreateDescriptorSetLayout(vk.dev, &dl, NULL, &dsl);
    VkPipelineLayoutCreateInfo pl = {
        VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
    pl.setLayoutCount = 1;
    pl.pSetLayouts = &dsl;
    VkPipelineLayout layout;
    vkCreatePipelineLayout(vk.dev, &pl, NULL, &layout);
    VkShaderModuleCreateInfo sci = {
        VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
    sci.codeSize = k->nwords * 4;
    sci.pCode = k->words;
    static uint32_t override[1 << 16];
    const char *ov = getenv("KILN_TEST_SPV");
    FILE *fp = ov ? fopen(ov, "rb") : NULL;
    if (fp != NULL) {
        sci.codeSize = fread(override, 4, 1 << 16, fp) * 4;
        sci.pCode = override;
        fclose(fp);
    }
    VkShaderModule sh;
    vkCreateShaderModule(vk.dev, &sci, NULL, &sh);
    VkComputePipelineCreateInfo cpi = {
        VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
    cpi.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    cpi.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    cpi.stage.module = sh;
    cpi.stage.pName = "main";
    cpi.layout = layout;
    VkPipeline pipe;
    int rc = vkCreateComputePipelines(vk.dev, VK_NULL_HANDLE, 1, &cpi, NULL,
                                      &pipe) == VK_SUCCESS ? 0 : -1;
    VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                               (uint32_t)n};
    VkDescriptorPoolCreateInfo dpi = {
        VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    dpi.maxSets = 1;
    dpi.poolSizeCount = 1;
    dpi.pPoolSizes = &ps;
    VkDescriptorPool dp;
    vkCreateDescriptorPool(vk.dev, &dpi, NULL, &dp);
    VkDescriptorSetAllocateInfo dai = {
        VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    dai.descriptorPool = dp;
    dai.descriptorSetCount = 1;
    dai.pSetLayouts = &dsl;
    VkDescriptorSet ds;
    vkAllocateDescriptorSets(vk.dev, &dai, &ds);
    VkDescriptorBufferInfo bi[32];
    VkWriteDescriptorSet wr[32];
    for (int i = 0; i < n; i++) {
        bi[i] = (VkDescriptorBufferInfo){buf[i], 0, VK_WHOLE_SIZE};
        wr[i] = (VkWriteDescriptorSet){VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
        wr[i].dstSet = ds;
        wr[i].dstBinding = (uint32_t)i;
        wr[i].descriptorCount = 1;
        wr[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        wr[i].pBufferInfo = &bi[i];
    }
    vkUpdateDescriptorSets(vk.dev, (uint32_t)n, wr, 0, NULL);
    if (rc == 0) {
        VkCommandBufferAllocateInfo cai = {
            VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
        cai.commandPool = vk.pool;
        cai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
        cai.commandBufferCount = 1;
        VkCommandBuffer cb;
        vkAllocateCommandBuffers(vk.dev, &cai, &cb);
        VkCommandBufferBeginInfo cbi = {
            VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
        vkBeginCommandBuffer(cb, &cbi);
        vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
        vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0,
                                1, &ds, 0, NULL);
        vkCmdDispatch(cb, groups, 1, 1);
        vkEndCommandBuffer(cb);
        VkSubmitInfo si = {VK_STRUCTURE_TYPE_SUBMIT_INFO};
        si.commandBufferCount = 1;
        si.pCommandBuffers = &cb;
        rc = vkQueueSubmit(vk.q, 1, &si, VK_NULL_HANDLE) == VK_SUCCESS
             && vkQueueWaitIdle(vk.q) == VK_SUCCESS ? 0 : -1;
        vkFreeCommandBuffers(vk.dev, vk.pool, 1, &cb);
        vkDestroyPipeline(vk.dev, pipe, NULL);
    }
    for (int i = 0; i < n; i++) {
        memcpy(data[i], map[i], sizes[i]);
        vkUnmapMemory(vk.dev, mem[i]);
        vkDestroyBuffer(vk.dev, buf[i], NULL);
        vkFreeMemory(vk.dev, mem[i], NULL);
    }
    vkDestroyDescriptorPool(vk.dev, dp, NULL);
    vkDestroyShaderModule(vk.dev, sh, NULL);
    vkDestroyPipelineLayout(vk.dev, layout, NULL);
    vkDestroyDescriptorSetLayout(vk.dev, dsl, NULL);
    return rc;
}

static const char *const EXC_NAMES[] = {
    "IndexError", "ZeroDivisionError", "ValueError", "OverflowError",
    "AssertionError",
};

/* Runs serial kernel k of case c on several random inputs and compares
 * with the Python function. */
static void
execute(const Case *c, KlModule *m, const KlSpirv *k)
{
    if (!vk_init()) {
        return;
    }
    PyObject *fn = PyDict_GetItemString(NS, c->func);
    int bad = 0, nruns = 8;
    const KlType *rt = k->ret_type;
    const char *rname = rt->kind == KL_T_NONE ? "" : rt->kind == KL_T_BOOL
                        ? "bool" : rt->name;
    static const char *const short_names[][2] = {
        {"int8", "i8"}, {"int16", "i16"}, {"int32", "i32"}, {"int64", "i64"},
        {"uint8", "u8"}, {"uint16", "u16"}, {"uint32", "u32"},
        {"uint64", "u64"}, {"float32", "f32"}, {"float64", "f64"},
        {"complex64", "c64"}, {"complex128", "c128"},
    };
    for (size_t i = 0; i < sizeof(short_names) / sizeof(short_names[0]); i++) {
        if (strcmp(rname, short_names[i][0]) == 0) {
            rname = short_names[i][1];
        }
    }
    for (int run = 0; run < nruns && !bad; run++) {
        PyObject *args = PyObject_CallFunction(
            PyDict_GetItemString(NS, "_gen"), "si", c->types, run);
        if (args == NULL) {
            PyErr_Print();
            failures++;
            return;
        }
        PyObject *exp = PyObject_CallFunction(PyDict_GetItemString(NS,
                                              "_expect"), "OO", fn, args);
        PyObject *packed = PyObject_CallFunction(PyDict_GetItemString(NS,
                                                 "_pack"), "sO", c->types,
                                                 args);
        if (exp == NULL || packed == NULL) {
            PyErr_Print();
            failures++;
            return;
        }
        PyObject *params = PyTuple_GetItem(packed, 0);
        PyObject *bufs = PyTuple_GetItem(packed, 1);
        int n = 2 + k->nbindings;
        unsigned char *data[32];
        size_t sizes[32];
        unsigned char status[48] = {0};
        data[0] = status;
        sizes[0] = 48;
        sizes[1] = (size_t)PyBytes_Size(params);
        data[1] = malloc(sizes[1] + 16);
        memcpy(data[1], PyBytes_AsString(params), sizes[1]);
        for (int b = 0; b < k->nbindings; b++) {
            const KlSpvBinding *kb = &k->bindings[b];
            if (kb->param >= 0) {
                int ai = 0;
                for (int32_t p = 0; p < kb->param; p++) {
                    ai += m->funcs[0]->param_types[p]->kind == KL_T_ARRAY;
                }
                PyObject *ba = PyList_GetItem(bufs, ai);
                sizes[2 + b] = (size_t)PyByteArray_Size(ba);
                data[2 + b] = malloc(sizes[2 + b] + 16);
                memcpy(data[2 + b], PyByteArray_AsString(ba), sizes[2 + b]);
            }
            else {
                sizes[2 + b] = (size_t)kb->count
                               * (size_t)kl_type_itemsize(kb->elem);
                data[2 + b] = calloc(1, sizes[2 + b] + 16);
            }
        }
        if (vk_run(k, data, sizes, n, 1) < 0) {
            printf("FAIL %s: dispatch failed\n", c->name);
            bad = 1;
        }
        for (int b = 0; b < k->nbindings; b++) {
            if (k->bindings[b].param >= 0) {
                int ai = 0;
                for (int32_t p = 0; p < k->bindings[b].param; p++) {
                    ai += m->funcs[0]->param_types[p]->kind == KL_T_ARRAY;
                }
                PyObject *ba = PyList_GetItem(bufs, ai);
                memcpy(PyByteArray_AsString(ba), data[2 + b], sizes[2 + b]);
            }
        }
        uint32_t site;
        memcpy(&site, status, 4);
        if (getenv("KILN_TEST_SPV") != NULL) {
            uint32_t w[12];
            memcpy(w, status, 48);
            printf("status words 8..11: %u %u %u %u\n", w[8], w[9], w[10],
                   w[11]);
        }
        const char *exc = "";
        if (site > 0 && (int32_t)site <= m->nraises) {
            const KlRaiseSite *rs = &m->raises[site - 1];
            exc = rs->kind == KL_EXC_USER
                  ? ((PyTypeObject *)rs->exc_class)->tp_name
                  : EXC_NAMES[rs->kind];
        }
        PyObject *res = bad ? NULL : PyObject_CallFunction(
            PyDict_GetItemString(NS, "_check"), "OsOOOOy#ss", fn, c->types,
            args, bufs, PyTuple_GetItem(exp, 0), PyTuple_GetItem(exp, 1),
            (const char *)status, (Py_ssize_t)48, rname, exc);
        if (!bad && res == NULL) {
            PyErr_Print();
            bad = 1;
        }
        else if (res != NULL && res != Py_None) {
            PyObject *rep = PyObject_Repr(args);
            printf("FAIL %s run %d: %s\n   args %s\n", c->name, run,
                   PyUnicode_AsUTF8(res), PyUnicode_AsUTF8(rep));
            Py_XDECREF(rep);
            bad = 1;
        }
        Py_XDECREF(res);
        for (int b = 1; b < n; b++) {
            free(data[b]);
        }
        Py_DECREF(args);
        Py_DECREF(exp);
        Py_DECREF(packed);
    }
    if (bad) {
        failures++;
    }
    else {
        printf("ran  %-14s %d random inputs match Python\n", c->name, nruns);
    }
}


/* Runs PFOR kernel k (the body of pfor instruction `pf` of m->funcs[0])
 * the way a dispatcher would, when every captured value is a parameter
 * or a constant: iterations over the first dimension of the first array
 * argument, chunk size cs, on one workgroup.  Compares with Python. */
static void
execute_pfor(const Case *c, KlModule *m, const KlInst *pf, const KlSpirv *k,
             int64_t cs)
{
    KlFunc *f0 = m->funcs[0];
    PyObject *fn = PyDict_GetItemString(NS, c->func);
    PyObject *args = PyObject_CallFunction(PyDict_GetItemString(NS, "_gen"),
                                           "si", c->types, 7);
    if (args == NULL || !vk_init()) {
        PyErr_Clear();
        Py_XDECREF(args);
        return;
    }
    PyObject *capt = PyList_New(0);
    int64_t niters = -1;
    for (int32_t i = 3; i < pf->nargs; i++) {
        const KlInst *a = &f0->insts[pf->args[i]];
        if (a->op == KL_OP_arg) {
            PyObject *x = PyList_GetItem(args, (Py_ssize_t)a->imm.i);
            PyList_Append(capt, x);
            if (niters < 0 && a->type->kind == KL_T_ARRAY) {
                PyObject *shape = PyObject_GetAttrString(x, "shape");
                niters = PyLong_AsLongLong(PyTuple_GetItem(shape, 0));
                Py_DECREF(shape);
            }
        }
        else if (a->op == KL_OP_const && a->type->kind == KL_T_INT) {
            PyObject *x = PyLong_FromLongLong(a->imm.i);
            PyList_Append(capt, x);
            Py_DECREF(x);
        }
        else {
            printf("skip %s: captured %s\n", c->name, kl_op_name(a->op));
            Py_DECREF(capt);
            Py_DECREF(args);
            return;
        }
    }
    PyObject *exp = PyObject_CallFunction(PyDict_GetItemString(NS,
                                          "_expect"), "OO", fn, args);
    PyObject *packed = PyObject_CallFunction(PyDict_GetItemString(NS,
                                             "_pack"), "sO", "", capt);
    PyObject *params = PyTuple_GetItem(packed, 0);
    PyObject *bufs = PyTuple_GetItem(packed, 1);
    unsigned char status[48] = {0}, *data[32];
    size_t sizes[32];
    int64_t head[3] = {(niters + cs - 1) / cs, cs, niters};
    data[0] = status;
    sizes[0] = 48;
    sizes[1] = 24 + (size_t)PyBytes_Size(params);
    data[1] = malloc(sizes[1]);
    memcpy(data[1], head, 24);
    memcpy(data[1] + 24, PyBytes_AsString(params), sizes[1] - 24);
    int n = 2 + k->nbindings;
    for (int b = 0; b < k->nbindings; b++) {
        int ai = 0;
        for (int32_t p = 3; p < k->bindings[b].param; p++) {
            ai += m->funcs[k->func]->param_types[p]->kind == KL_T_ARRAY;
        }
        PyObject *ba = PyList_GetItem(bufs, ai);
        sizes[2 + b] = (size_t)PyByteArray_Size(ba);
        data[2 + b] = malloc(sizes[2 + b]);
        memcpy(data[2 + b], PyByteArray_AsString(ba), sizes[2 + b]);
    }
    int rc = vk_run(k, data, sizes, n, 1);
    for (int b = 0; b < k->nbindings; b++) {
        int ai = 0;
        for (int32_t p = 3; p < k->bindings[b].param; p++) {
            ai += m->funcs[k->func]->param_types[p]->kind == KL_T_ARRAY;
        }
        memcpy(PyByteArray_AsString(PyList_GetItem(bufs, ai)), data[2 + b],
               sizes[2 + b]);
    }
    /* compare the arrays: _check over the captured list */
    PyObject *cexp = PyList_New(0);
    for (int32_t i = 3; i < pf->nargs; i++) {
        const KlInst *a = &f0->insts[pf->args[i]];
        PyObject *x = a->op == KL_OP_arg
                      ? PyList_GetItem(PyTuple_GetItem(exp, 1),
                                       (Py_ssize_t)a->imm.i)
                      : Py_None;
        PyList_Append(cexp, x);
    }
    PyObject *res = rc < 0 ? NULL : PyObject_CallFunction(
        PyDict_GetItemString(NS, "_check"), "OsOOOOy#ss", fn, "", capt, bufs,
        Py_None, cexp, (const char *)status, (Py_ssize_t)48, "", "");
    if (res == NULL || res != Py_None) {
        if (res == NULL) {
            PyErr_Print();
        }
        printf("FAIL %s (cs %lld): %s\n", c->name, (long long)cs,
               res ? PyUnicode_AsUTF8(res) : "dispatch failed");
        failures++;
    }
    else {
        printf("ran  %-14s %lld iterations, chunk size %lld: match Python\n",
               c->name, (long long)niters, (long long)cs);
    }
    Py_XDECREF(res);
    for (int b = 1; b < n; b++) {
        free(data[b]);
    }
    Py_DECREF(cexp);
    Py_DECREF(capt);
    Py_DECREF(exp);
    Py_DECREF(packed);
    Py_DECREF(args);
}

/* Emits and validates the kernels of module m for case c. */
static void
emit_module(const Case *c, KlModule *m)
{
    KlDiag d = {0};
    KlFunc *f0 = m->funcs[0];
    int npfor = 0;
    if (verbose) {
        char *t = kl_module_print(m);
        printf("%s", t ? t : "");
        free(t);
        for (int32_t i = 0; i < m->nfuncs; i++) {
            show_structure(m->funcs[i]);
        }
    }
    for (int32_t i = 0; i < f0->ninsts; i++) {
        const KlInst *in = &f0->insts[i];
        if (in->op != KL_OP_pfor) {
            continue;
        }
        KlSpirv k;
        char name[80];
        snprintf(name, sizeof(name), "%s.pfor%d", c->name, npfor++);
        if (kl_spirv_emit(m, (int32_t)in->imm.i, KL_SPV_PFOR, &k, &d) < 0) {
            printf("FAIL %s: %s (line %d)\n", name, d.msg, d.line);
            failures++;
            return;
        }
        validate(name, &k);
        execute_pfor(c, m, in, &k, 1);
        execute_pfor(c, m, in, &k, 2);
        kl_spirv_free(&k);
    }
    if (npfor > 0) {
        /* the serial part must be refused, naming what is missing */
        KlSpirv k;
        if (kl_spirv_emit(m, 0, KL_SPV_SERIAL, &k, &d) == 0
            || d.kind != KL_DIAG_COMPILE) {
            printf("FAIL %s: serial part with prange not refused\n",
                   c->name);
            failures++;
        }
        kl_spirv_free(&k);
        return;
    }
    KlSpirv k;
    int rc = kl_spirv_emit(m, 0, KL_SPV_SERIAL, &k, &d);
    if (c->expect_error) {
        if (rc == 0 || d.kind != KL_DIAG_COMPILE) {
            printf("FAIL %s: expected a CompileError\n", c->name);
            failures++;
        }
        else {
            printf("ok   %-14s CompileError: %s (line %d)\n", c->name,
                   d.msg, d.line);
        }
        kl_spirv_free(&k);
        return;
    }
    if (rc < 0) {
        printf("FAIL %s: %s (line %d)\n", c->name, d.msg, d.line);
        failures++;
        return;
    }
    validate(c->name, &k);
    execute(c, m, &k);
    kl_spirv_free(&k);
}

/* ---- hand-built IR: float32 math -------------------------------------- */

/* f(x: f32, y: f32) -> f32 summing every float32 math function kiln has
 * on the Vulkan target. */
static void
hand_math(void)
{
    static const KlMathFn fns[] = {
        KL_MATH_sqrt, KL_MATH_sin, KL_MATH_cos, KL_MATH_tan, KL_MATH_asin,
        KL_MATH_acos, KL_MATH_atan, KL_MATH_atan2, KL_MATH_sinh,
        KL_MATH_cosh, KL_MATH_tanh, KL_MATH_asinh, KL_MATH_acosh,
        KL_MATH_atanh, KL_MATH_exp, KL_MATH_exp2, KL_MATH_log, KL_MATH_log2,
        KL_MATH_log10, KL_MATH_pow, KL_MATH_fabs, KL_MATH_hypot,
        KL_MATH_copysign, KL_MATH_fmod, KL_MATH_floor, KL_MATH_ceil,
        KL_MATH_trunc, KL_MATH_rint,
    };
    KlOptions opt = {.fastmath = 0, .boundscheck = 1};
    KlModule *m = kl_module_new(opt);
    KlFunc *f = kl_func_new(m, "mathf32");
    const KlType **pt = kl_arena_alloc(&m->arena, sizeof(KlType *) * 2);
    pt[0] = pt[1] = kl_f32;
    f->nparams = 2;
    f->param_types = pt;
    f->ret_type = kl_f32;
    int32_t x = kl_emit(f, 0, KL_OP_arg, kl_f32, 1, 0, NULL);
    int32_t y = kl_emit(f, 0, KL_OP_arg, kl_f32, 1, 0, NULL);
    f->insts[y].imm.i = 1;
    int32_t acc = kl_const_float(f, 0, kl_f32, 0.0, 1);
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        int32_t args[2] = {x, y};
        int32_t r = kl_emit(f, 0, KL_OP_math, kl_f32, 2,
                            kl_math_nargs(fns[i]), args);
        f->insts[r].aux = fns[i];
        int32_t s[2] = {acc, r};
        acc = kl_emit(f, 0, KL_OP_add, kl_f32, 2, 2, s);
    }
    kl_emit(f, 0, KL_OP_ret, kl_void, 2, 1, &acc);
    KlDiag d = {0};
    KlSpirv k;
    if (kl_verify(f, 1, &d) < 0 || kl_spirv_emit(m, 0, KL_SPV_SERIAL, &k,
                                                 &d) < 0) {
        printf("FAIL mathf32: %s\n", d.msg);
        failures++;
    }
    else {
        validate("mathf32", &k);
        kl_spirv_free(&k);
    }
    kl_module_free(m);
}

int
main(int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            verbose = 1;
        }
        else {
            only = argv[i];
        }
    }
    mkdir("/tmp/kiln_spirv_test", 0777);
    Py_Initialize();
    if (kl_types_init() < 0) {
        return 1;
    }
    PyObject *mod = PyImport_AddModule("kiln_spirv_kernels");
    NS = PyModule_GetDict(mod);
    PyDict_SetItemString(NS, "__builtins__", PyEval_GetBuiltins());
    PyObject *r = PyRun_String(SOURCE, Py_file_input, NS, NS);
    if (r == NULL) {
        PyErr_Print();
        return 1;
    }
    Py_DECREF(r);
    for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
        const Case *c = &CASES[i];
        if (only != NULL && strcmp(only, c->name) != 0) {
            continue;
        }
        KlDiag d = {0};
        KlModule *m = compile_case(c, &d);
        if (PyErr_Occurred()) {
            PyErr_Print();
        }
        if (d.kind != KL_DIAG_NONE) {
            if (c->expect_error && d.kind == KL_DIAG_COMPILE) {
                printf("ok   %-14s CompileError before the backend: %s\n",
                       c->name, d.msg);
            }
            else {
                printf("FAIL %s: pipeline: %s (line %d)\n", c->name, d.msg,
                       d.line);
                failures++;
            }
        }
        else {
            emit_module(c, m);
        }
        kl_module_free(m);
    }
    if (only == NULL || strcmp(only, "mathf32") == 0) {
        hand_math();
    }
    printf("%d failure(s)\n", failures);
    Py_Finalize();
    return failures != 0;
}
