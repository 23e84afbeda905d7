/* builder.c: the SPIR-V module builder (see builder.h). */
#include "builder.h"

#include <stdlib.h>
#include <string.h>

#include "kernel.h"

void
kl_spv_init(KlSpvMod *m)
{
    memset(m, 0, sizeof(*m));
    m->bound = 1;
}

void
kl_spv_release(KlSpvMod *m)
{
    free(m->entry.w);
    free(m->names.w);
    free(m->decos.w);
    free(m->types.w);
    free(m->funcs.w);
    free(m->keys);
    memset(m, 0, sizeof(*m));
}

uint32_t
kl_spv_id(KlSpvMod *m)
{
    return m->bound++;
}

/* Makes room for n more words in b; 0 or -1 (oom recorded). */
static int
reserve(KlSpvMod *m, KlSpvBuf *b, size_t n)
{
    if (b->n + n <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n) {
        cap *= 2;
    }
    uint32_t *p = realloc(b->w, cap * sizeof(uint32_t));
    if (p == NULL) {
        m->oom = 1;
        return -1;
    }
    b->w = p;
    b->cap = cap;
    return 0;
}

void
kl_spv_inst(KlSpvMod *m, KlSpvBuf *b, SpvOp op, const uint32_t *w, size_t n)
{
    if (reserve(m, b, n + 1) < 0) {
        return;
    }
    b->w[b->n++] = (uint32_t)((n + 1) << 16) | (uint32_t)op;
    if (n > 0) {
        memcpy(b->w + b->n, w, n * sizeof(uint32_t));
    }
    b->n += n;
}

void
kl_spv_append(KlSpvMod *m, KlSpvBuf *dst, const KlSpvBuf *src)
{
    if (src->n == 0 || reserve(m, dst, src->n) < 0) {
        return;
    }
    memcpy(dst->w + dst->n, src->w, src->n * sizeof(uint32_t));
    dst->n += src->n;
}

void
kl_spv_inst_str(KlSpvMod *m, KlSpvBuf *b, SpvOp op, const uint32_t *w,
                size_t n, const char *s, const uint32_t *t, size_t nt)
{
    size_t len = strlen(s), sw = len / 4 + 1;
    size_t total = 1 + n + sw + nt;
    if (reserve(m, b, total) < 0) {
        return;
    }
    uint32_t *p = b->w + b->n;
    p[0] = (uint32_t)(total << 16) | (uint32_t)op;
    if (n > 0) {
        memcpy(p + 1, w, n * sizeof(uint32_t));
    }
    memset(p + 1 + n, 0, sw * sizeof(uint32_t));
    memcpy(p + 1 + n, s, len);     /* little-endian packing, NUL padded */
    if (nt > 0) {
        memcpy(p + 1 + n + sw, t, nt * sizeof(uint32_t));
    }
    b->n += total;
}

/* ---- deduplicated types and constants -------------------------------- */

/* The id of (op, w[0..n)) in the types section, emitting it on first
 * use; `typed` puts w[0] (a result type) before the result id. */
static uint32_t
intern(KlSpvMod *m, SpvOp op, const uint32_t *w, uint32_t n, int typed)
{
    for (int32_t i = 0; i < m->nkeys; i++) {
        KlSpvKey *k = &m->keys[i];
        if (k->op == (uint32_t)op && k->nw == n
            && (n == 0 || memcmp(k->w, w, n * sizeof(uint32_t)) == 0)) {
            return k->id;
        }
    }
    if (m->nkeys == m->capkeys) {
        int32_t cap = m->capkeys ? m->capkeys * 2 : 64;
        KlSpvKey *p = realloc(m->keys, sizeof(KlSpvKey) * (size_t)cap);
        if (p == NULL) {
            m->oom = 1;
            return 0;
        }
        m->keys = p;
        m->capkeys = cap;
    }
    KlSpvKey *k = &m->keys[m->nkeys++];
    memset(k, 0, sizeof(*k));
    k->op = (uint32_t)op;
    k->nw = n;
    if (n > 0) {
        memcpy(k->w, w, n * sizeof(uint32_t));
    }
    k->id = kl_spv_id(m);
    uint32_t ops[8];
    if (typed) {
        ops[0] = w[0];
        ops[1] = k->id;
        memcpy(ops + 2, w + 1, (n - 1) * sizeof(uint32_t));
    }
    else {
        ops[0] = k->id;
        if (n > 0) {
            memcpy(ops + 1, w, n * sizeof(uint32_t));
        }
    }
    kl_spv_inst(m, &m->types, op, ops, n + 1);
    return k->id;
}

uint32_t
kl_spv_void(KlSpvMod *m)
{
    return intern(m, SpvOpTypeVoid, NULL, 0, 0);
}

uint32_t
kl_spv_bool(KlSpvMod *m)
{
    return intern(m, SpvOpTypeBool, NULL, 0, 0);
}

uint32_t
kl_spv_int(KlSpvMod *m, int bits)
{
    uint32_t w[2] = {(uint32_t)bits, 0};
    m->caps |= bits == 64 ? KL_SPV_INT64 : bits == 16 ? KL_SPV_INT16
               : bits == 8 ? KL_SPV_INT8 : 0;
    return intern(m, SpvOpTypeInt, w, 2, 0);
}

uint32_t
kl_spv_float(KlSpvMod *m, int bits)
{
    uint32_t w[1] = {(uint32_t)bits};
    if (bits == 64) {
        m->caps |= KL_SPV_FLOAT64;
    }
    m->fwidths |= bits == 64 ? 2u : bits == 32 ? 1u : 0u;
    return intern(m, SpvOpTypeFloat, w, 1, 0);
}

uint32_t
kl_spv_vec(KlSpvMod *m, uint32_t comp, int n)
{
    uint32_t w[2] = {comp, (uint32_t)n};
    return intern(m, SpvOpTypeVector, w, 2, 0);
}

uint32_t
kl_spv_ptr(KlSpvMod *m, SpvStorageClass sc, uint32_t t)
{
    uint32_t w[2] = {(uint32_t)sc, t};
    return intern(m, SpvOpTypePointer, w, 2, 0);
}

uint32_t
kl_spv_fntype(KlSpvMod *m, uint32_t ret, const uint32_t *params, int n)
{
    /* function types can be long: never deduplicated past 5 params */
    if (n <= 5) {
        uint32_t w[6];
        w[0] = ret;
        if (n > 0) {
            memcpy(w + 1, params, (size_t)n * sizeof(uint32_t));
        }
        return intern(m, SpvOpTypeFunction, w, (uint32_t)n + 1, 0);
    }
    uint32_t id = kl_spv_id(m);
    uint32_t *w = malloc(sizeof(uint32_t) * ((size_t)n + 2));
    if (w == NULL) {
        m->oom = 1;
        return id;
    }
    w[0] = id;
    w[1] = ret;
    memcpy(w + 2, params, (size_t)n * sizeof(uint32_t));
    kl_spv_inst(m, &m->types, SpvOpTypeFunction, w, (size_t)n + 2);
    free(w);
    return id;
}

uint32_t
kl_spv_fresh_type(KlSpvMod *m, SpvOp op, const uint32_t *w, size_t n)
{
    uint32_t id = kl_spv_id(m), ops[8];
    ops[0] = id;
    memcpy(ops + 1, w, n * sizeof(uint32_t));
    kl_spv_inst(m, &m->types, op, ops, n + 1);
    return id;
}

uint32_t
kl_spv_const_int(KlSpvMod *m, int bits, uint64_t v)
{
    uint32_t w[3] = {kl_spv_int(m, bits), 0, 0};
    if (bits < 32) {
        v &= ((uint64_t)1 << bits) - 1;
    }
    w[1] = (uint32_t)v;
    w[2] = (uint32_t)(v >> 32);
    return intern(m, SpvOpConstant, w, bits == 64 ? 3 : 2, 1);
}

uint32_t
kl_spv_const_float(KlSpvMod *m, int bits, double v)
{
    uint32_t w[3] = {kl_spv_float(m, bits), 0, 0};
    if (bits == 64) {
        uint64_t u;
        memcpy(&u, &v, 8);
        w[1] = (uint32_t)u;
        w[2] = (uint32_t)(u >> 32);
        return intern(m, SpvOpConstant, w, 3, 1);
    }
    float x = (float)v;
    memcpy(&w[1], &x, 4);
    return intern(m, SpvOpConstant, w, 2, 1);
}

uint32_t
kl_spv_const_bool(KlSpvMod *m, int v)
{
    uint32_t w[1] = {kl_spv_bool(m)};
    return intern(m, v ? SpvOpConstantTrue : SpvOpConstantFalse, w, 1, 1);
}

uint32_t
kl_spv_const_composite(KlSpvMod *m, uint32_t type, uint32_t a, uint32_t b)
{
    uint32_t w[3] = {type, a, b};
    return intern(m, SpvOpConstantComposite, w, 3, 1);
}

uint32_t
kl_spv_undef(KlSpvMod *m, uint32_t type)
{
    uint32_t w[1] = {type};
    return intern(m, SpvOpUndef, w, 1, 1);
}

void
kl_spv_name(KlSpvMod *m, uint32_t id, const char *name)
{
    uint32_t w[1] = {id};
    kl_spv_inst_str(m, &m->names, SpvOpName, w, 1, name, NULL, 0);
}

/* ---- assembly --------------------------------------------------------- */

int
kl_spv_finish(KlSpvMod *m, uint32_t **words, size_t *nwords)
{
    KlSpvBuf out = {NULL, 0, 0};
    uint32_t header[5] = {SpvMagicNumber, 0x00010300, 0, m->bound, 0};
    *words = NULL;
    *nwords = 0;
    if (reserve(m, &out, 5) == 0) {
        memcpy(out.w, header, sizeof(header));
        out.n = 5;
    }
    SPV(m, &out, SpvOpCapability, SpvCapabilityShader);
    if (m->caps & KL_SPV_INT64) {
        SPV(m, &out, SpvOpCapability, SpvCapabilityInt64);
    }
    if (m->caps & KL_SPV_FLOAT64) {
        SPV(m, &out, SpvOpCapability, SpvCapabilityFloat64);
    }
    if (m->caps & KL_SPV_INT8) {
        SPV(m, &out, SpvOpCapability, SpvCapabilityInt8);
        SPV(m, &out, SpvOpCapability, SpvCapabilityStorageBuffer8BitAccess);
    }
    if (m->caps & KL_SPV_INT16) {
        SPV(m, &out, SpvOpCapability, SpvCapabilityInt16);
        SPV(m, &out, SpvOpCapability, SpvCapabilityStorageBuffer16BitAccess);
    }
    if (m->subgroup) {
        SPV(m, &out, SpvOpCapability, SpvCapabilityGroupNonUniform);
    }
    if (m->psb) {
        SPV(m, &out, SpvOpCapability,
            SpvCapabilityPhysicalStorageBufferAddresses);
    }
    /* Python's float semantics: signed zeros, infinities and NaNs are
     * values the driver must not optimise away (x + 0.0 is not x). */
    int fctl = m->fwidths != 0 && m->entry_fn != 0;
    if (fctl) {
        SPV(m, &out, SpvOpCapability, SpvCapabilitySignedZeroInfNanPreserve);
        for (uint32_t k = 0; k < 2; k++) {
            if (m->fwidths & (1u << k)) {
                SPV(m, &m->entry, SpvOpExecutionMode, m->entry_fn,
                    SpvExecutionModeSignedZeroInfNanPreserve, 32u << k);
            }
        }
        kl_spv_inst_str(m, &out, SpvOpExtension, NULL, 0,
                        "SPV_KHR_float_controls", NULL, 0);
    }
    if (m->caps & KL_SPV_INT8) {
        kl_spv_inst_str(m, &out, SpvOpExtension, NULL, 0,
                        "SPV_KHR_8bit_storage", NULL, 0);
    }
    if (m->caps & KL_SPV_INT16) {
        kl_spv_inst_str(m, &out, SpvOpExtension, NULL, 0,
                        "SPV_KHR_16bit_storage", NULL, 0);
    }
    if (m->psb) {
        kl_spv_inst_str(m, &out, SpvOpExtension, NULL, 0,
                        "SPV_KHR_physical_storage_buffer", NULL, 0);
    }
    if (m->glsl != 0) {
        uint32_t w[1] = {m->glsl};
        kl_spv_inst_str(m, &out, SpvOpExtInstImport, w, 1, "GLSL.std.450",
                        NULL, 0);
    }
    SPV(m, &out, SpvOpMemoryModel,
        m->psb ? SpvAddressingModelPhysicalStorageBuffer64
               : SpvAddressingModelLogical,
        SpvMemoryModelGLSL450);
    kl_spv_append(m, &out, &m->entry);
    kl_spv_append(m, &out, &m->names);
    kl_spv_append(m, &out, &m->decos);
    kl_spv_append(m, &out, &m->types);
    kl_spv_append(m, &out, &m->funcs);
    if (m->oom) {
        free(out.w);
        return -1;
    }
    out.w[3] = m->bound;
    *words = out.w;
    *nwords = out.n;
    return 0;
}
