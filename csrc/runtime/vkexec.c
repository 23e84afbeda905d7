/* vkexec.c: calls of SPIR-V kernels on the Vulkan runtime (see vkexec.h).
 *
 * Every call takes a status buffer (its head zeroed) and a params buffer
 * from a small pool, binds one buffer per array binding, records one batch
 * (uploads, the kernel's dispatch, the reductions' combining dispatches,
 * downloads) and submits it.  An array argument
 * is bound through an imported view of its own memory when the runtime
 * can import it and its bytes overlap no other binding's (kernel.h: the
 * shader assumes no aliasing); otherwise through a copy, written back
 * after the dispatch only when the kernel may store into it.
 */
#define _GNU_SOURCE
#include "vkexec.h"
#include "vulkan.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The device combination of one reduction's partials (kernel.h
 * KlSpvBinding.reduce; runtime/vulkan.h kl_vk_reduce_pipeline). */
typedef struct Combine {
    KlVkPipeline *first;        /* over the partials as the body stores
                                   them (packed when narrow) */
    KlVkPipeline *rest;         /* over results of `first` */
    uint32_t item;              /* bytes of one result (32-bit for narrow
                                   integers and bool) */
    uint32_t keep;              /* bytes of the caller's element */
} Combine;

struct KlVkKernel {
    KlSpirv spv;                /* words, bindings, features */
    KlVkPipeline *pipe;         /* owned by the runtime */
    const KlType **ptypes;      /* the values of the params buffer, in
                                   order (after a PFOR kernel's head) */
    int32_t nptypes;
    int32_t param0;             /* kernel param number of ptypes[0] */
    Combine *comb;              /* per binding (PFOR with reductions, else
                                   NULL): how its partials are combined */
};

/* ---- kernels --------------------------------------------------------- */

/* The runtime's reduce shader numbers the operations as KlReduceOp less
 * one (ir.h, runtime/vulkan.h). */
#define VK_OP(op) ((KlVkReduceOp)((op) - KL_RED_ADD))
_Static_assert(VK_OP(KL_RED_ADD) == KL_VK_R_ADD
               && VK_OP(KL_RED_MUL) == KL_VK_R_MUL
               && VK_OP(KL_RED_MIN) == KL_VK_R_MIN
               && VK_OP(KL_RED_MAX) == KL_VK_R_MAX
               && VK_OP(KL_RED_AND) == KL_VK_R_AND
               && VK_OP(KL_RED_OR) == KL_VK_R_OR
               && VK_OP(KL_RED_XOR) == KL_VK_R_XOR,
               "KlReduceOp and KlVkReduceOp disagree");

/* Chooses the reduction pipelines for partials of element type t combined
 * by `reduce` (a KlReduceOp other than KL_RED_NONE).  0, or -1 with d
 * filled. */
static int
combine_init(Combine *c, const KlType *t, int reduce, KlDiag *d)
{
    KlVkReduceType rt;
    uint32_t bits = 0;
    switch (t->kind) {
    case KL_T_BOOL:
        rt = KL_VK_R_U32;
        bits = 8;
        break;
    case KL_T_INT:
        rt = t->bits == 64 ? (t->is_signed ? KL_VK_R_I64 : KL_VK_R_U64)
             : t->is_signed ? KL_VK_R_I32 : KL_VK_R_U32;
        bits = t->bits < 32 ? (uint32_t)t->bits : 0;
        break;
    case KL_T_FLOAT:
        rt = t->bits == 64 ? KL_VK_R_F64 : KL_VK_R_F32;
        break;
    case KL_T_COMPLEX:
        rt = t->bits == 128 ? KL_VK_R_C128 : KL_VK_R_C64;
        break;
    default:
        return kl_internal_error(d, "Vulkan: a reduction of an unexpected "
                                 "type");
    }
    static const uint32_t sizes[KL_VK_R_NTYPES] = {4, 4, 8, 8, 4, 8, 8, 16};
    c->item = sizes[rt];
    c->keep = (uint32_t)kl_type_itemsize(t);
    c->first = kl_vk_reduce_pipeline(rt, VK_OP(reduce), bits, d);
    c->rest = c->first == NULL ? NULL
              : bits == 0 ? c->first : kl_vk_reduce_pipeline(rt, VK_OP(reduce),
                                                              0, d);
    return c->rest == NULL ? -1 : 0;
}

/* Names the features `need` (KL_SPV_* bits) the device lacks into buf;
 * returns how many are missing. */
static int
missing_features(uint32_t need, const KlVkInfo *info, char *buf, size_t size)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {
        {KL_SPV_INT64, "shaderInt64 (int64 arithmetic)"},
        {KL_SPV_FLOAT64, "shaderFloat64 (float64 arithmetic)"},
        {KL_SPV_INT8, "shaderInt8 + storageBuffer8BitAccess (8-bit types)"},
        {KL_SPV_INT16,
         "shaderInt16 + storageBuffer16BitAccess (16-bit types)"},
    };
    int n = 0;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int have = names[i].bit == KL_SPV_INT64 ? info->int64
                   : names[i].bit == KL_SPV_FLOAT64 ? info->float64
                   : names[i].bit == KL_SPV_INT8
                   ? info->int8 && info->storage8
                   : info->int16 && info->storage16;
        if ((need & names[i].bit) && !have) {
            int w = snprintf(buf + used, size - used, "%s%s", n ? ", " : "",
                             names[i].name);
            if (w > 0 && (size_t)w < size - used) {
                used += (size_t)w;
            }
            n++;
        }
    }
    return n;
}

KlVkKernel *
kl_vk_kernel_new(KlModule *m, int32_t fi, KlSpvKind kind, KlDiag *d)
{
    const KlVkInfo *info = kl_vk_info();
    if (info == NULL) {
        kl_error(d, KL_DIAG_VALUE, 0, "no Vulkan device is available");
        return NULL;
    }
    KlVkKernel *k = calloc(1, sizeof(KlVkKernel));
    if (k == NULL) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        return NULL;
    }
    if (kl_spirv_emit(m, fi, kind, &k->spv, d) < 0) {
        free(k);
        return NULL;
    }
    char missing[256];
    if (missing_features(k->spv.features, info, missing,
                         sizeof(missing)) > 0) {
        kl_compile_error(d, m->funcs[fi]->ninsts > 0
                         ? m->funcs[fi]->insts[0].line : 0,
                         "the Vulkan device %s lacks %s, which %s needs",
                         info->name, missing, m->funcs[fi]->name);
        goto fail;
    }
    const KlFunc *f = m->funcs[fi];
    k->param0 = kind == KL_SPV_PFOR ? 3 : 0;
    k->nptypes = f->nparams - k->param0;
    k->ptypes = malloc(sizeof(KlType *) * (size_t)(k->nptypes + 1));
    if (k->ptypes == NULL) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < k->nptypes; i++) {
        k->ptypes[i] = f->param_types[k->param0 + i];
    }
    for (int32_t b = 0; b < k->spv.nbindings; b++) {
        const KlSpvBinding *kb = &k->spv.bindings[b];
        if (kb->reduce == KL_RED_NONE) {
            continue;
        }
        if (k->comb == NULL) {
            k->comb = calloc((size_t)k->spv.nbindings, sizeof(Combine));
            if (k->comb == NULL) {
                kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
                goto fail;
            }
        }
        if (combine_init(&k->comb[b], kb->elem, kb->reduce, d) < 0) {
            goto fail;
        }
    }
    uint32_t nbuffers = (uint32_t)KL_SPV_FIRST_ARRAY
                        + (k->spv.bda ? 0 : (uint32_t)k->spv.nbindings);
    k->pipe = kl_vk_pipeline(k->spv.words, k->spv.nwords, "main", nbuffers,
                             0, NULL, 0, d);
    if (k->pipe == NULL) {
        goto fail;
    }
    return k;
fail:
    kl_vk_kernel_free(k);
    return NULL;
}

void
kl_vk_kernel_free(KlVkKernel *k)
{
    if (k == NULL) {
        return;
    }
    kl_spirv_free(&k->spv);
    free(k->ptypes);
    free(k->comb);
    free(k);
}

const uint32_t *
kl_vk_kernel_words(const KlVkKernel *k, size_t *nwords)
{
    *nwords = k->spv.nwords;
    return k->spv.words;
}

/* ---- device ranges (DeviceArray) -------------------------------------- */

typedef struct DevMem {
    char *base;                 /* reserved range, never mapped */
    uint64_t size;
    KlVkBuffer *buf;
} DevMem;

static pthread_mutex_t devmem_lock = PTHREAD_MUTEX_INITIALIZER;
static DevMem *devmem;
static size_t ndevmem, capdevmem;

void *
kl_vk_devmem_new(uint64_t size, KlDiag *d)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = ((size_t)size + page) / page * page;
    void *base = mmap(NULL, span, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of address space");
        return NULL;
    }
    KlVkBuffer *b = kl_vk_buffer_create(size, d);
    if (b == NULL) {
        munmap(base, span);
        return NULL;
    }
    pthread_mutex_lock(&devmem_lock);
    if (ndevmem == capdevmem) {
        size_t cap = capdevmem ? capdevmem * 2 : 16;
        DevMem *p = realloc(devmem, sizeof(DevMem) * cap);
        if (p == NULL) {
            pthread_mutex_unlock(&devmem_lock);
            kl_vk_buffer_destroy(b);
            munmap(base, span);
            kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
            return NULL;
        }
        devmem = p;
        capdevmem = cap;
    }
    devmem[ndevmem++] = (DevMem){base, span, b};
    pthread_mutex_unlock(&devmem_lock);
    return base;
}

void
kl_vk_devmem_free(void *base)
{
    pthread_mutex_lock(&devmem_lock);
    for (size_t i = 0; i < ndevmem; i++) {
        if (devmem[i].base == base) {
            DevMem dm = devmem[i];
            devmem[i] = devmem[--ndevmem];
            pthread_mutex_unlock(&devmem_lock);
            kl_vk_buffer_destroy(dm.buf);
            munmap(dm.base, dm.size);
            return;
        }
    }
    pthread_mutex_unlock(&devmem_lock);
}

KlVkBuffer *
kl_vk_devmem_find(const void *p, uint64_t *offset)
{
    KlVkBuffer *b = NULL;
    if (ndevmem == 0) {
        return NULL;
    }
    pthread_mutex_lock(&devmem_lock);
    for (size_t i = 0; i < ndevmem; i++) {
        const char *c = p;
        if (c >= devmem[i].base && c < devmem[i].base + devmem[i].size) {
            *offset = (uint64_t)(c - devmem[i].base);
            b = devmem[i].buf;
            break;
        }
    }
    pthread_mutex_unlock(&devmem_lock);
    return b;
}

/* ---- pooled call buffers ---------------------------------------------- */

/* The status, params and reduction partials buffers of calls are reused
 * (all are device buffers of kl_vk_buffer_create): a call takes the
 * smallest free buffer large enough (sizes are powers of two from 256
 * bytes) and puts it back after its batch has finished.  At most
 * POOL_MAX buffers of at most POOL_MAX_BYTES each stay free; they are
 * released with the device at shutdown. */
#define POOL_MAX 16
#define POOL_MAX_BYTES (4u << 20)

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static KlVkBuffer *pool[POOL_MAX];
static int npool;

/* A buffer of at least `size` bytes, contents undefined.  NULL with d
 * filled. */
static KlVkBuffer *
pool_get(uint64_t size, KlDiag *d)
{
    KlVkBuffer *b = NULL;
    pthread_mutex_lock(&pool_lock);
    int best = -1;
    for (int i = 0; i < npool; i++) {
        uint64_t have = kl_vk_buffer_size(pool[i]);
        if (have >= size
            && (best < 0 || have < kl_vk_buffer_size(pool[best]))) {
            best = i;
        }
    }
    if (best >= 0) {
        b = pool[best];
        pool[best] = pool[--npool];
    }
    pthread_mutex_unlock(&pool_lock);
    if (b != NULL) {
        return b;
    }
    uint64_t bytes = 256;
    while (bytes < size) {
        bytes *= 2;
    }
    return kl_vk_buffer_create(bytes, d);
}

/* Returns b (NULL is ignored) to the pool, or frees it.  No batch may
 * still use it. */
static void
pool_put(KlVkBuffer *b)
{
    if (b == NULL) {
        return;
    }
    pthread_mutex_lock(&pool_lock);
    if (npool < POOL_MAX && kl_vk_buffer_size(b) <= POOL_MAX_BYTES) {
        pool[npool++] = b;
        b = NULL;
    }
    pthread_mutex_unlock(&pool_lock);
    kl_vk_buffer_destroy(b);
}

/* ---- one call ---------------------------------------------------------- */

/* An array value as the call sees it (shape, byte strides). */
typedef struct ArrView {
    char *data;
    const int64_t *shape;
    const int64_t *strides;
} ArrView;

/* One array binding of a call. */
typedef struct Bound {
    KlVkBuffer *buf;            /* bound buffer (owned unless device) */
    char *lo;                   /* first byte of the span (host arrays) */
    uint64_t size;              /* bytes of the span */
    int64_t offset;             /* elements from the binding's start to
                                   element [0, ..., 0] */
    KlVkBuffer *comb;           /* partials: the combination's results
                                   (from the pool), else NULL */
    uint8_t owned;              /* buf is destroyed after the call, or
                                   returned to the pool when `pooled` */
    uint8_t pooled;             /* buf came from the pool (partials) */
    uint8_t copied;             /* buf is a copy of [lo, lo + size) */
    uint8_t written;            /* the kernel may store into it */
} Bound;

/* The span of array a (type t) in bytes: *lo and the byte count (0 for an
 * empty array); -1 when a byte stride is not a multiple of the item
 * size (the shader indexes in elements). */
static int
span_of(const ArrView *a, const KlType *t, char **lo, uint64_t *size)
{
    int64_t item = kl_type_itemsize(t->elem);
    int64_t first = 0, last = 0;
    for (int k = 0; k < t->ndim; k++) {
        if (a->shape[k] == 0) {
            *lo = a->data;
            *size = 0;
            return 0;
        }
    }
    for (int k = 0; k < t->ndim; k++) {
        if (a->strides[k] % item != 0) {
            return -1;
        }
        int64_t reach = (a->shape[k] - 1) * a->strides[k];
        if (reach < 0) {
            first += reach;
        }
        else {
            last += reach;
        }
    }
    *lo = a->data + first;
    *size = (uint64_t)(last - first + item);
    return 0;
}

/* Call state. */
typedef struct Call {
    const KlVkKernel *k;
    KlDiag *d;
    ArrView *arr;               /* per ptypes entry (arrays only) */
    Bound *bound;               /* per binding */
    int32_t nbound;
    int64_t nchunks;            /* PFOR: chunks */
    uint32_t groups;            /* workgroups dispatched */
    KlVkBuffer *status, *params;
    uint32_t words[KL_SPV_STATUS_WORDS];
} Call;

/* Appends n bytes from src at offset *pos of p; with p NULL only counts
 * them. */
static void
put_bytes(unsigned char *p, size_t *pos, const void *src, size_t n)
{
    if (p != NULL) {
        memcpy(p + *pos, src, n);
    }
    *pos += n;
}

/* Appends value v of type t (array a, `offset` elements into its
 * binding) to the params at *pos (kernel.h layout); with p NULL only
 * advances *pos. */
static void
pack_value(unsigned char *p, size_t *pos, const KlType *t, const void *v,
           const ArrView *a, int64_t offset)
{
    uint64_t slot = 0;
    switch (t->kind) {
    case KL_T_NONE:
        return;
    case KL_T_BOOL:
        slot = *(const uint8_t *)v ? 1 : 0;
        put_bytes(p, pos, &slot, 8);
        return;
    case KL_T_INT:
    case KL_T_FLOAT:
        memcpy(&slot, v, (size_t)t->bits / 8);      /* zero-padded */
        put_bytes(p, pos, &slot, 8);
        return;
    case KL_T_COMPLEX:
        put_bytes(p, pos, v, (size_t)t->bits / 8);
        return;
    case KL_T_ARRAY: {
        int64_t item = kl_type_itemsize(t->elem);
        put_bytes(p, pos, &offset, 8);
        for (int k = 0; k < t->ndim; k++) {
            put_bytes(p, pos, &a->shape[k], 8);
        }
        for (int k = 0; k < t->ndim; k++) {
            int64_t s = a->strides[k] / item;
            put_bytes(p, pos, &s, 8);
        }
        return;
    }
    default:
        return;
    }
}

/* The number of partials of reduction binding kb: one per chunk, or one
 * per workgroup when the kernel folds them (kernel.h). */
static uint64_t
npartials(const Call *c, const KlSpvBinding *kb)
{
    return kb->per_group ? c->groups
           : c->nchunks > 0 ? (uint64_t)c->nchunks : 1;
}

/* Binding b holds a reduction's partials: a device buffer of one partial
 * per chunk or workgroup, and one for its combination (record_combine).
 * 0 or -1. */
static int
bind_partials(Call *c, int32_t b)
{
    const KlSpvBinding *kb = &c->k->spv.bindings[b];
    const Combine *cb = &c->k->comb[b];
    Bound *bd = &c->bound[b];
    uint64_t n = npartials(c, kb);
    if (n > UINT32_MAX / KL_VK_REDUCE_SLICE) {
        return kl_error(c->d, KL_DIAG_VALUE, 0, "Vulkan: too many chunks "
                        "in a prange reduction");
    }
    uint64_t groups = (n + KL_VK_REDUCE_SLICE - 1) / KL_VK_REDUCE_SLICE;
    uint64_t size = (n * (uint64_t)kl_type_itemsize(kb->elem) + 3) / 4 * 4;
    bd->owned = bd->pooled = 1;
    bd->buf = pool_get(size, c->d);
    bd->comb = bd->buf == NULL ? NULL
               : pool_get((groups + 1) * cb->item, c->d);
    return bd->comb == NULL ? -1 : 0;
}

/* Records the device combination of the partials of binding b (bound by
 * bind_partials) and the download of the result into the caller's
 * element 0 (dst).  With at most KL_VK_REDUCE_SLICE partials, one
 * workgroup combines them all; otherwise G workgroups combine G slices
 * and one more workgroup their G results, a shape that depends only on
 * the number of partials.  0 or -1. */
static int
record_combine(Call *c, KlVkBatch *batch, int32_t b, void *dst)
{
    const Combine *cb = &c->k->comb[b];
    Bound *bd = &c->bound[b];
    uint32_t count = (uint32_t)npartials(c, &c->k->spv.bindings[b]);
    uint32_t groups = (count + KL_VK_REDUCE_SLICE - 1) / KL_VK_REDUCE_SLICE;
    KlVkBuffer *bufs[2] = {bd->buf, bd->comb};
    if (groups <= 1) {
        KlVkReducePush all = {0, count, 1, 0, 0};
        if (kl_vk_batch_dispatch(batch, cb->first, bufs, &all, 1, 1, 1,
                                 c->d) < 0) {
            return -1;
        }
    }
    else {
        /* slices of `per`; recount so that none is empty */
        uint32_t per = (count + groups - 1) / groups;
        groups = (count + per - 1) / per;
        KlVkReducePush slices = {0, count, 1, 1, 0};
        KlVkReducePush rest = {1, groups, 1, 0, 0};
        KlVkBuffer *again[2] = {bd->comb, bd->comb};
        if (kl_vk_batch_dispatch(batch, cb->first, bufs, &slices, groups, 1,
                                 1, c->d) < 0
            || kl_vk_batch_dispatch(batch, cb->rest, again, &rest, 1, 1, 1,
                                    c->d) < 0) {
            return -1;
        }
    }
    return kl_vk_batch_download(batch, bd->comb, 0, dst, cb->keep, c->d);
}

/* Chooses each binding's buffer: device memory as it is, an imported
 * view of the caller's memory, or a copy.  vals/types as in run(). */
static int
bind_arrays(Call *c, void *const *vals)
{
    const KlVkKernel *k = c->k;
    for (int32_t b = 0; b < k->spv.nbindings; b++) {
        const KlSpvBinding *kb = &k->spv.bindings[b];
        Bound *bd = &c->bound[b];
        bd->written = kb->written;
        if (kb->reduce != KL_RED_NONE) {
            if (bind_partials(c, b) < 0) {
                return -1;
            }
            continue;
        }
        if (kb->param < 0) {
            uint64_t size = (uint64_t)kb->count
                            * (uint64_t)kl_type_itemsize(kb->elem);
            bd->buf = kl_vk_buffer_create(size, c->d);
            bd->owned = 1;
            if (bd->buf == NULL) {
                return -1;
            }
            continue;
        }
        int32_t i = kb->param - k->param0;
        const KlType *t = k->ptypes[i];
        const ArrView *a = &c->arr[i];
        int64_t item = kl_type_itemsize(t->elem);
        if (vals[i] == NULL || span_of(a, t, &bd->lo, &bd->size) < 0) {
            return kl_error(c->d, KL_DIAG_VALUE, 0,
                            "the Vulkan target needs array strides that are "
                            "multiples of the item size");
        }
        const KlVkInfo *info = kl_vk_info();
        if (!k->spv.bda && info != NULL
            && bd->size > info->max_storage_buffer_range) {
            return kl_error(c->d, KL_DIAG_VALUE, 0,
                            "an array of %llu bytes exceeds the device's "
                            "storage-buffer range (%llu bytes), and the "
                            "device lacks buffer device addresses, which "
                            "larger arrays need",
                            (unsigned long long)bd->size,
                            (unsigned long long)
                            info->max_storage_buffer_range);
        }
        uint64_t off;
        KlVkBuffer *dev = kl_vk_devmem_find(bd->lo, &off);
        if (dev != NULL) {
            bd->buf = dev;
            bd->offset = (int64_t)((uint64_t)(a->data - bd->lo) + off) / item;
            continue;
        }
        bd->offset = (a->data - bd->lo) / item;
    }
    /* host arrays: import when alone, else copy */
    for (int32_t b = 0; b < k->spv.nbindings; b++) {
        Bound *bd = &c->bound[b];
        if (bd->buf != NULL) {
            continue;
        }
        int alone = bd->size > 0;
        for (int32_t o = 0; alone && o < k->spv.nbindings; o++) {
            const Bound *x = &c->bound[o];
            alone = o == b || x->lo == NULL || x->size == 0
                    || x->lo >= bd->lo + bd->size || bd->lo >= x->lo + x->size;
        }
        bd->owned = 1;
        if (alone && kl_vk_host_importable(bd->lo, bd->size)) {
            KlDiag ignored = {0};
            bd->buf = kl_vk_buffer_import(bd->lo, bd->size, &ignored);
            if (bd->buf != NULL) {
                continue;
            }
        }
        bd->buf = kl_vk_buffer_create(bd->size, c->d);
        if (bd->buf == NULL) {
            return -1;
        }
        bd->copied = 1;
    }
    return 0;
}

/* After a PFOR dispatch of `groups` workgroups whose status word 0 says
 * some workgroup raised: finds the record of the lowest raising chunk
 * (kernel.h) and puts its site + 1 and payload into c->words 0 and 2..7,
 * as a serial kernel leaves them.  0, or -1 with c->d filled. */
static int
lowest_record(Call *c, uint32_t groups)
{
    uint64_t bytes = (uint64_t)groups * KL_SPV_RECORD_WORDS * 4;
    const uint32_t *rec = kl_vk_buffer_host_ptr(c->status);
    uint32_t *copy = NULL;
    if (rec != NULL) {
        rec += KL_SPV_RECORDS_AT;
    }
    else {
        copy = malloc(bytes);
        if (copy == NULL) {
            return kl_error(c->d, KL_DIAG_NOMEM, 0, "out of memory");
        }
        if (kl_vk_buffer_download(c->status, KL_SPV_RECORDS_AT * 4, copy,
                                  bytes, c->d) < 0) {
            free(copy);
            return -1;
        }
        rec = copy;
    }
    uint64_t best = 0;
    const uint32_t *win = NULL;
    for (uint32_t g = 0; g < groups; g++) {
        const uint32_t *r = rec + (size_t)g * KL_SPV_RECORD_WORDS;
        uint64_t key = (uint64_t)r[0] | (uint64_t)r[1] << 32;
        if (key != 0 && (best == 0 || key < best)) {
            best = key;
            win = r;
        }
    }
    int rc = 0;
    if (win == NULL) {
        rc = kl_internal_error(c->d, "Vulkan: a raise was flagged but no "
                               "workgroup recorded one");
    }
    else {
        c->words[0] = win[2];
        memcpy(&c->words[2], &win[4], 24);
    }
    free(copy);
    return rc;
}

/* Writes the params of the call into p (kernel.h layout): head (3 int64,
 * PFOR only), the values vals[i] of types k->ptypes[i] (arrays viewed in
 * c->arr, bound in c->bound), then with device addresses one uint64 per
 * binding.  Returns the byte count; with p NULL only counts. */
static size_t
pack_all(const Call *c, const int64_t *head, void *const *vals,
         unsigned char *p)
{
    const KlVkKernel *k = c->k;
    size_t pos = 0;
    if (head != NULL) {
        put_bytes(p, &pos, head, 24);
    }
    for (int32_t i = 0; i < k->nptypes; i++) {
        int64_t offset = 0;
        for (int32_t b = 0; b < c->nbound; b++) {
            if (k->spv.bindings[b].param == k->param0 + i) {
                offset = c->bound[b].offset;
            }
        }
        pack_value(p, &pos, k->ptypes[i], vals[i], &c->arr[i], offset);
    }
    for (int32_t b = 0; k->spv.bda && b < c->nbound; b++) {
        uint64_t addr = p != NULL ? kl_vk_buffer_address(c->bound[b].buf)
                                  : 0;
        put_bytes(p, &pos, &addr, 8);
    }
    return pos;
}

/* The params bytes of the call (pack_all), malloc'ed, their count the
 * kernel's params_bytes; NULL with c->d filled when out of memory or when
 * the values do not add up to the kernel's params (an internal error). */
static unsigned char *
pack_params(const Call *c, const int64_t *head, void *const *vals)
{
    size_t need = pack_all(c, head, vals, NULL);
    size_t psize = c->k->spv.params_bytes;
    if (need != psize) {
        kl_internal_error(c->d, "Vulkan params: the values take %zu bytes, "
                          "the kernel wants %zu", need, psize);
        return NULL;
    }
    unsigned char *p = malloc(psize > 0 ? psize : 1);
    if (p == NULL) {
        kl_error(c->d, KL_DIAG_NOMEM, 0, "out of memory");
        return NULL;
    }
    pack_all(c, head, vals, p);
    return p;
}

/* Records the call's batch: the status head zeroed, the params and the
 * copied arrays uploaded, the kernel dispatched over `groups` workgroups
 * (buffers bufs: status, params, then the bindings), the status words
 * downloaded into c->words, the reductions' combinations, and the copied
 * arrays the kernel may write downloaded.  0 or -1 with c->d filled. */
static int
record_call(Call *c, KlVkBatch *batch, KlVkBuffer **bufs,
            const unsigned char *params, uint32_t groups)
{
    const KlVkKernel *k = c->k;
    KlDiag *d = c->d;
    size_t psize = k->spv.params_bytes;
    if (kl_vk_batch_fill(batch, c->status, 0, KL_SPV_STATUS_WORDS * 4, 0,
                         d) < 0
        || (psize > 0 && kl_vk_batch_upload(batch, c->params, 0, params,
                                            psize, d) < 0)) {
        return -1;
    }
    for (int32_t b = 0; b < c->nbound; b++) {
        Bound *bd = &c->bound[b];
        if (bd->copied && bd->size > 0
            && kl_vk_batch_upload(batch, bd->buf, 0, bd->lo, bd->size,
                                  d) < 0) {
            return -1;
        }
    }
    if (kl_vk_batch_dispatch(batch, k->pipe, bufs, NULL, groups, 1, 1, d) < 0
        || kl_vk_batch_download(batch, c->status, 0, c->words,
                                KL_SPV_STATUS_WORDS * 4, d) < 0) {
        return -1;
    }
    for (int32_t b = 0; b < c->nbound; b++) {
        int32_t i = k->spv.bindings[b].param - k->param0;
        if (c->bound[b].comb != NULL
            && record_combine(c, batch, b, c->arr[i].data) < 0) {
            return -1;
        }
    }
    for (int32_t b = 0; b < c->nbound; b++) {
        Bound *bd = &c->bound[b];
        if (bd->copied && bd->written && bd->size > 0
            && kl_vk_batch_download(batch, bd->buf, 0, bd->lo, bd->size,
                                    d) < 0) {
            return -1;
        }
    }
    return 0;
}

/* After the call's batch has run over `groups` workgroups: puts a PFOR
 * kernel's lowest raise into c->words and reports lavapipe's loop limit.
 * 0 or -1 with c->d filled. */
static int
finish_call(Call *c, uint32_t groups)
{
    if (c->k->spv.records && c->words[0] != 0
        && lowest_record(c, groups) < 0) {
        return -1;
    }
    if (c->words[12] != 0) {
        return kl_error(c->d, KL_DIAG_RUNTIME, 0, "the Vulkan driver stopped "
                        "a loop after %d steps of one invocation (lavapipe's "
                        "loop limit), so the results are incomplete; give "
                        "each prange iteration less serial work",
                        KL_SPV_LOOP_LIMIT);
    }
    return 0;
}

/* Frees the call's bindings and returns its status, params and partials
 * buffers to the pool; no batch may still use them. */
static void
release_call(Call *c)
{
    for (int32_t b = 0; c->bound != NULL && b < c->nbound; b++) {
        if (c->bound[b].pooled) {
            pool_put(c->bound[b].buf);
        }
        else if (c->bound[b].owned) {
            kl_vk_buffer_destroy(c->bound[b].buf);
        }
        pool_put(c->bound[b].comb);
    }
    pool_put(c->status);
    pool_put(c->params);
    free(c->bound);
    c->bound = NULL;
    c->status = c->params = NULL;
}

/* Runs kernel k: head (3 int64, PFOR only) then the values vals[i] of
 * types k->ptypes[i] (arrays already viewed in arr), over `groups`
 * workgroups.  0, or -1 with d filled; the status words land in c->words. */
static int
run(Call *c, const int64_t *head, void *const *vals, uint32_t groups)
{
    const KlVkKernel *k = c->k;
    KlDiag *d = c->d;
    int rc = -1;
    unsigned char *params = NULL;
    int32_t nb = k->spv.nbindings;
    c->bound = calloc((size_t)nb + 1, sizeof(Bound));
    KlVkBuffer **bufs = calloc((size_t)nb + KL_SPV_FIRST_ARRAY,
                               sizeof(KlVkBuffer *));
    if (c->bound == NULL || bufs == NULL) {
        kl_error(d, KL_DIAG_NOMEM, 0, "out of memory");
        goto done;
    }
    c->nbound = nb;
    c->groups = groups;
    if (bind_arrays(c, vals) < 0
        || (params = pack_params(c, head, vals)) == NULL) {
        goto done;
    }
    uint64_t status_bytes = k->spv.records
        ? (KL_SPV_RECORDS_AT + (uint64_t)groups * KL_SPV_RECORD_WORDS) * 4
        : KL_SPV_STATUS_WORDS * 4;
    c->status = pool_get(status_bytes, d);
    c->params = c->status ? pool_get(k->spv.params_bytes, d) : NULL;
    if (c->params == NULL) {
        goto done;
    }
    bufs[0] = c->status;
    bufs[1] = c->params;
    for (int32_t b = 0; b < nb; b++) {
        bufs[KL_SPV_FIRST_ARRAY + b] = c->bound[b].buf;
    }
    KlVkBatch *batch = kl_vk_batch_begin(d);
    if (batch == NULL || record_call(c, batch, bufs, params, groups) < 0) {
        kl_vk_batch_discard(batch);
        goto done;
    }
    rc = kl_vk_batch_submit(batch, d);
    if (rc == 0) {
        rc = finish_call(c, groups);
    }
done:
    release_call(c);
    free(bufs);
    free(params);
    return rc;
}

/* Fills st from the status words; 1 when the kernel raised, else 0. */
static int32_t
read_status(const Call *c, KlStatus *st)
{
    if (c->words[0] == 0) {
        return 0;
    }
    st->site = (int32_t)c->words[0] - 1;
    st->pad = 0;
    memcpy(st->payload, &c->words[2], 24);
    return 1;
}

/* Allocates c->arr and views there each array among the kernel's values
 * vals (KlArrayArg; a NULL value stays an empty view).  0, or -1 with
 * c->d filled. */
static int
view_arrays(Call *c, void *const *vals)
{
    const KlVkKernel *k = c->k;
    c->arr = calloc((size_t)k->nptypes + 1, sizeof(ArrView));
    if (c->arr == NULL) {
        return kl_error(c->d, KL_DIAG_NOMEM, 0, "out of memory");
    }
    for (int32_t i = 0; i < k->nptypes; i++) {
        const KlArrayArg *a = vals[i];
        if (k->ptypes[i]->kind == KL_T_ARRAY && a != NULL) {
            c->arr[i] = (ArrView){a->data, a->shape, a->strides};
        }
    }
    return 0;
}

int32_t
kl_vk_serial(const KlVkKernel *k, void **args, void *ret, KlStatus *st,
             KlDiag *d)
{
    Call c;
    memset(&c, 0, sizeof(c));
    c.k = k;
    c.d = d;
    if (view_arrays(&c, args) < 0) {
        return -1;
    }
    int rc = run(&c, NULL, args, 1);
    free(c.arr);
    if (rc < 0) {
        return -1;
    }
    if (read_status(&c, st)) {
        return 1;
    }
    memcpy(ret, &c.words[8], 16);
    return 0;
}

int32_t
kl_vk_pfor(const KlVkKernel *k, int64_t nchunks, int64_t cs, int64_t niters,
           void **captured, KlStatus *st, KlDiag *d)
{
    if (nchunks <= 0) {
        return 0;
    }
    const KlVkInfo *info = kl_vk_info();
    uint64_t groups = ((uint64_t)nchunks + KL_SPV_PFOR_WG - 1)
                      / KL_SPV_PFOR_WG;
    if (info != NULL && groups > info->max_workgroup_count[0]) {
        groups = info->max_workgroup_count[0];
    }
    for (int32_t b = 0; b < k->spv.nbindings; b++) {
        /* folded partials need at most one chunk per invocation, which
           parallel.c's cap on reduction chunks guarantees */
        if (k->spv.bindings[b].per_group
            && (uint64_t)nchunks > groups * KL_SPV_PFOR_WG) {
            return kl_internal_error(d, "a folded reduction of %lld chunks",
                                     (long long)nchunks);
        }
    }
    Call c;
    memset(&c, 0, sizeof(c));
    c.k = k;
    c.d = d;
    if (view_arrays(&c, captured) < 0) {
        return -1;
    }
    int64_t head[3] = {nchunks, cs, niters};
    c.nchunks = nchunks;
    int rc = run(&c, head, captured, (uint32_t)groups);
    free(c.arr);
    return rc < 0 ? -1 : read_status(&c, st);
}
