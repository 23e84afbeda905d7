/* builder.h: a small SPIR-V module builder (internal to backend/spirv).
 *
 * Instructions are appended as words to the section they belong to;
 * types and constants are created on demand and deduplicated, so asking
 * twice for `float32` or the constant 1 gives the same id.  The module is
 * assembled in the order the SPIR-V specification requires when it is
 * finished, with the capabilities and extensions the types used need.
 * Out of memory is sticky: the builder records it and kl_spv_finish
 * reports it.
 */
#ifndef KILN_SPIRV_BUILDER_H
#define KILN_SPIRV_BUILDER_H

#include <stddef.h>
#include <stdint.h>

#include <spirv/unified1/spirv.h>

/* A growable word buffer. */
typedef struct KlSpvBuf {
    uint32_t *w;
    size_t n, cap;
} KlSpvBuf;

/* A deduplicated type or constant: opcode and operand words. */
typedef struct KlSpvKey {
    uint32_t op;
    uint32_t nw;
    uint32_t w[6];          /* operands after the result id */
    uint32_t id;
} KlSpvKey;

typedef struct KlSpvMod {
    uint32_t bound;         /* next free id */
    int oom;                /* an allocation failed */
    uint32_t caps;          /* KL_SPV_* features used (kernel.h) */
    uint32_t glsl;          /* id of the GLSL.std.450 import, 0 until used */
    uint32_t fwidths;       /* float widths used: bit 0 32-bit, bit 1 64 */
    int subgroup;           /* uses GroupNonUniform (basic subgroup ops,
                               in every Vulkan 1.1 compute stage) */
    int psb;                /* uses PhysicalStorageBuffer pointers
                               (buffer device addresses) */
    uint32_t entry_fn;      /* the entry point's function id (for the
                               float-control execution modes), or 0 */
    KlSpvBuf entry;         /* OpEntryPoint, OpExecutionMode */
    KlSpvBuf names;         /* OpName */
    KlSpvBuf decos;         /* OpDecorate, OpMemberDecorate */
    KlSpvBuf types;         /* types, constants, global variables */
    KlSpvBuf funcs;         /* function bodies */
    KlSpvKey *keys;         /* dedup table of types and constants */
    int32_t nkeys, capkeys;
} KlSpvMod;

void kl_spv_init(KlSpvMod *m);
void kl_spv_release(KlSpvMod *m);
uint32_t kl_spv_id(KlSpvMod *m);

/* Appends instruction op with operand words w[0..n) to b. */
void kl_spv_inst(KlSpvMod *m, KlSpvBuf *b, SpvOp op, const uint32_t *w,
                 size_t n);
/* Appends buffer src to dst. */
void kl_spv_append(KlSpvMod *m, KlSpvBuf *dst, const KlSpvBuf *src);
/* Appends op with words w[0..n), then string s, then words t[0..nt). */
void kl_spv_inst_str(KlSpvMod *m, KlSpvBuf *b, SpvOp op, const uint32_t *w,
                     size_t n, const char *s, const uint32_t *t, size_t nt);

#define KL_SPV_N(...) (sizeof((uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t))
/* SPV(m, buf, op, operand words...) */
#define SPV(m, b, op, ...) \
    kl_spv_inst((m), (b), (op), (uint32_t[]){__VA_ARGS__}, \
                KL_SPV_N(__VA_ARGS__))

/* Types (deduplicated).  Integers are all declared signless (signedness
 * 0); operations choose signed or unsigned behaviour. */
uint32_t kl_spv_void(KlSpvMod *m);
uint32_t kl_spv_bool(KlSpvMod *m);
uint32_t kl_spv_int(KlSpvMod *m, int bits);
uint32_t kl_spv_float(KlSpvMod *m, int bits);
uint32_t kl_spv_vec(KlSpvMod *m, uint32_t comp, int n);
uint32_t kl_spv_ptr(KlSpvMod *m, SpvStorageClass sc, uint32_t t);
/* function type: return type, then parameter types */
uint32_t kl_spv_fntype(KlSpvMod *m, uint32_t ret, const uint32_t *params,
                       int n);
/* A fresh (never deduplicated) type: op with operands w[0..n). */
uint32_t kl_spv_fresh_type(KlSpvMod *m, SpvOp op, const uint32_t *w,
                           size_t n);

/* Constants (deduplicated).  bits: width of the integer/float type. */
uint32_t kl_spv_const_int(KlSpvMod *m, int bits, uint64_t v);
uint32_t kl_spv_const_float(KlSpvMod *m, int bits, double v);
uint32_t kl_spv_const_bool(KlSpvMod *m, int v);
uint32_t kl_spv_const_composite(KlSpvMod *m, uint32_t type, uint32_t a,
                                uint32_t b);
uint32_t kl_spv_undef(KlSpvMod *m, uint32_t type);

/* OpName for id. */
void kl_spv_name(KlSpvMod *m, uint32_t id, const char *name);

/* Assembles the module: header, capabilities and extensions for the
 * features used, the GLSL.std.450 import when used, memory model, then
 * the sections.  *words is malloc'ed.  0, or -1 when out of memory. */
int kl_spv_finish(KlSpvMod *m, uint32_t **words, size_t *nwords);

#endif /* KILN_SPIRV_BUILDER_H */
