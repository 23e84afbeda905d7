/* vulkan.h: kiln's Vulkan runtime: one device, its buffers, compute
 * pipelines and batches of dispatches.
 *
 * It knows nothing about how SPIR-V is produced: the SPIR-V backend queries
 * the device's features (kl_vk_info) to choose capabilities, builds
 * pipelines from its words (kl_vk_pipeline) and runs them in batches
 * (kl_vk_batch_*).  The Vulkan loader is opened at run time, so every
 * function here can be called on a machine without Vulkan: kl_vk_init then
 * fails with the reason, and nothing else may be called.  This header
 * includes no Vulkan header; handles are opaque.
 *
 * Errors: functions return 0 / a pointer on success and -1 / NULL after
 * filling the KlDiag they were given (kind KL_DIAG_INTERNAL for Vulkan
 * failures such as a lost device or exhausted device memory, KL_DIAG_NOMEM
 * when host memory runs out, KL_DIAG_VALUE for a request the device cannot
 * meet).  Nothing aborts.  After VK_ERROR_DEVICE_LOST every later call
 * fails with "device lost".
 *
 * Threads: every function may be called from any thread; a call that may
 * wait for the device (kl_vk_batch_submit, the buffer transfers) should be
 * made without the GIL.
 */
#ifndef KILN_VULKAN_H
#define KILN_VULKAN_H

#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- device ------------------------------------------------------------ */

/* The kind of physical device, in kiln's order of preference. */
typedef enum KlVkDeviceKind {
    KL_VK_DISCRETE = 0,     /* a discrete GPU: separate memory */
    KL_VK_INTEGRATED,       /* a GPU sharing the host's memory */
    KL_VK_VIRTUAL,          /* a GPU in a virtual machine */
    KL_VK_CPU,              /* a CPU implementation (lavapipe, SwiftShader) */
    KL_VK_OTHER,            /* anything else */
} KlVkDeviceKind;

/* Subgroup operations (bit values equal VkSubgroupFeatureFlagBits). */
enum {
    KL_VK_SUBGROUP_BASIC = 0x01,
    KL_VK_SUBGROUP_VOTE = 0x02,
    KL_VK_SUBGROUP_ARITHMETIC = 0x04,
    KL_VK_SUBGROUP_BALLOT = 0x08,
    KL_VK_SUBGROUP_SHUFFLE = 0x10,
    KL_VK_SUBGROUP_SHUFFLE_RELATIVE = 0x20,
    KL_VK_SUBGROUP_CLUSTERED = 0x40,
    KL_VK_SUBGROUP_QUAD = 0x80,
};

/* What the selected device is and can do.  Every feature flag set here is
 * also enabled on the logical device, so SPIR-V may use the matching
 * capability exactly when its flag is true. */
typedef struct KlVkInfo {
    char name[256];                 /* "llvmpipe (LLVM 15.0.6, 256 bits)" */
    KlVkDeviceKind kind;            /* discrete, integrated, ..., CPU */
    uint32_t index;                 /* index in vkEnumeratePhysicalDevices */
    uint32_t vendor_id;             /* PCI vendor id (0x10005 for Mesa) */
    uint32_t device_id;             /* vendor-specific device id */
    uint32_t api_version;           /* usable version (the device's, capped
                                       by the loader's and 1.3), packed as
                                       VK_MAKE_API_VERSION; >= 1.1 */
    uint32_t driver_version;        /* vendor-specific packing */
    uint32_t spirv_version;         /* highest SPIR-V accepted, as the word in
                                       a module header: 0x00010300 for 1.3
                                       (Vulkan 1.1), 0x00010500 (1.2),
                                       0x00010600 (1.3) */
    /* shader arithmetic types (capability Float64, Int64, Int16, Int8) */
    bool float64;                   /* shaderFloat64 */
    bool int64;                     /* shaderInt64 */
    bool int16;                     /* shaderInt16 */
    bool int8;                      /* shaderInt8 */
    bool float16;                   /* shaderFloat16 */
    /* storage access to narrow types in storage buffers */
    bool storage8;                  /* storageBuffer8BitAccess
                                       (capability StorageBuffer8BitAccess) */
    bool storage16;                 /* storageBuffer16BitAccess
                                       (capability StorageBuffer16BitAccess) */
    /* memory model and addressing */
    bool buffer_device_address;     /* bufferDeviceAddress: buffers have
                                       64-bit addresses (kl_vk_buffer_address;
                                       capability
                                       PhysicalStorageBufferAddresses) */
    bool scalar_block_layout;       /* scalarBlockLayout */
    bool vulkan_memory_model;       /* vulkanMemoryModel */
    /* atomics on storage buffers */
    bool int64_atomics;             /* shaderBufferInt64Atomics */
    bool float32_atomic_add;        /* VK_EXT_shader_atomic_float:
                                       shaderBufferFloat32AtomicAdd */
    bool float64_atomic_add;        /* shaderBufferFloat64AtomicAdd */
    /* host memory import (VK_EXT_external_memory_host) */
    bool external_memory_host;      /* host pointers can back buffers */
    uint64_t host_import_alignment; /* minImportedHostPointerAlignment; 0
                                       without the extension */
    /* subgroups */
    uint32_t subgroup_size;         /* invocations per subgroup (>= 1) */
    uint32_t subgroup_ops;          /* KL_VK_SUBGROUP_* supported in compute
                                       shaders; 0 when compute has none */
    /* limits */
    uint64_t max_storage_buffer_range;  /* bytes one storage binding may
                                           span; larger arrays need buffer
                                           device addresses */
    uint64_t max_allocation_size;   /* largest single buffer, bytes */
    uint32_t min_storage_offset_alignment;  /* minStorageBufferOffset-
                                               Alignment, bytes */
    uint32_t max_push_constants_size;       /* bytes, >= 128 */
    uint32_t max_storage_buffers;   /* per-stage storage buffer bindings */
    uint32_t max_workgroup_count[3];        /* per dispatch dimension */
    uint32_t max_workgroup_size[3];         /* LocalSize per dimension */
    uint32_t max_workgroup_invocations;     /* product of LocalSize */
    uint32_t max_shared_memory;     /* bytes of Workgroup storage */
    double timestamp_period;        /* nanoseconds per timestamp tick */
    /* memory */
    bool unified_memory;            /* device-local memory is host-visible:
                                       buffers are mapped, no staging copies */
    uint64_t device_memory;         /* bytes of the largest device-local
                                       heap */
} KlVkInfo;

/* Opens the Vulkan loader, creates the instance and the logical device on
 * the first call; later calls return the memoised outcome at once.
 * Returns 0 when a device is ready.  Returns -1 with the reason in d
 * (kind KL_DIAG_VALUE) when Vulkan cannot be used here: no loader, no
 * driver, no device with compute and Vulkan 1.1, or KILN_VULKAN_DEVICE
 * naming no device.  That is the normal outcome on machines without
 * Vulkan, not an internal error.
 *
 * Device choice: env KILN_VULKAN_DEVICE holds either an index into the
 * enumerated devices or a case-insensitive substring of a device name;
 * without it, the first discrete GPU, else integrated, virtual, CPU.
 * Env KILN_VULKAN_VALIDATE=1 enables the Khronos validation layer when it
 * is installed (messages go to stderr); KILN_VULKAN_STAGING=1 treats the
 * device as having separate memory (unified_memory false), so that the
 * staging path of discrete GPUs can be tested on lavapipe;
 * KILN_VULKAN_NO_BDA=1 leaves bufferDeviceAddress off (buffer_device_address
 * false), so that the storage-buffer-only path can be; KILN_VULKAN_MAX_GROUPS
 * =n lowers max_workgroup_count to at most n per dimension, so that the
 * later rounds of pfor kernels' grid-stride loops run with small arrays
 * (dispatches needing more workgroups fail).  Thread-safe. */
int kl_vk_init(KlDiag *d);

/* True when kl_vk_init has succeeded (never initialises anything). */
bool kl_vk_ready(void);

/* The selected device; NULL unless kl_vk_init has succeeded.  Immutable
 * and valid until kl_vk_shutdown. */
const KlVkInfo *kl_vk_info(void);

/* Waits for the device to go idle and destroys everything: pipelines,
 * buffers still alive, the device and the instance.  Registered with
 * atexit by kl_vk_init; calling it earlier is allowed once no other thread
 * uses the runtime, after which kl_vk_init fails.  Buffers and pipelines
 * must not be used after it. */
void kl_vk_shutdown(void);

/* ---- buffers ------------------------------------------------------------ */

/* A storage buffer in device memory (or host memory imported into the
 * device).  Usable as a storage binding, a transfer source and target,
 * and, when the device supports it, through its device address. */
typedef struct KlVkBuffer KlVkBuffer;

/* A new buffer of `size` bytes (size 0 is allowed and binds as a tiny
 * buffer), contents undefined.  Device-local memory; on unified-memory
 * devices that memory is also mapped for direct host access. */
KlVkBuffer *kl_vk_buffer_create(uint64_t size, KlDiag *d);

/* True when [ptr, ptr + size) can back a buffer without copies:
 * VK_EXT_external_memory_host is enabled, and the pages around the range
 * can be imported with the range starting at an offset that satisfies
 * min_storage_offset_alignment.  ptr must stay valid (and its pages
 * mapped) for the life of the buffer. */
bool kl_vk_host_importable(const void *ptr, uint64_t size);

/* A buffer aliasing host memory [ptr, ptr + size): dispatches read and
 * write that memory directly, and uploads from / downloads to ptr itself
 * copy nothing.  The aligned pages around the range are imported; the
 * buffer's view starts at kl_vk_buffer_offset().  Requires
 * kl_vk_host_importable(ptr, size); NULL otherwise, or when the driver
 * refuses the pointer (e.g. read-only pages): callers then fall back to
 * kl_vk_buffer_create and transfers. */
KlVkBuffer *kl_vk_buffer_import(void *ptr, uint64_t size, KlDiag *d);

/* Frees the buffer and its memory (NULL is ignored).  No batch that uses
 * it may still be recorded or running. */
void kl_vk_buffer_destroy(KlVkBuffer *b);

/* Size in bytes of the buffer's view (what was asked for). */
uint64_t kl_vk_buffer_size(const KlVkBuffer *b);

/* Byte offset of the view inside the underlying VkBuffer: 0 except for
 * imported host memory.  Bindings and device addresses already include
 * it; callers need it only for their own arithmetic. */
uint64_t kl_vk_buffer_offset(const KlVkBuffer *b);

/* Device address of the view's first byte (capability
 * PhysicalStorageBufferAddresses); 0 when the device lacks
 * buffer_device_address. */
uint64_t kl_vk_buffer_address(const KlVkBuffer *b);

/* Host pointer to the view's first byte when the buffer's memory is
 * mapped (unified memory, or imported host memory); NULL otherwise.
 * Reading or writing it races with running batches. */
void *kl_vk_buffer_host_ptr(const KlVkBuffer *b);

/* Copies size bytes from host memory into the buffer at offset
 * (through a staging buffer when the memory is not mapped), and waits. */
int kl_vk_buffer_upload(KlVkBuffer *b, uint64_t offset, const void *src,
                        uint64_t size, KlDiag *d);

/* Copies size bytes of the buffer at offset into host memory, and waits. */
int kl_vk_buffer_download(KlVkBuffer *b, uint64_t offset, void *dst,
                          uint64_t size, KlDiag *d);

/* ---- pipelines ---------------------------------------------------------- */

/* A compute pipeline.  Its layout is one descriptor set (set 0) holding
 * `nbuffers` storage buffers at bindings 0 .. nbuffers-1, plus one push
 * constant range of `push_size` bytes (offset 0) when push_size > 0.
 * Owned by the runtime: never destroyed before kl_vk_shutdown. */
typedef struct KlVkPipeline KlVkPipeline;

/* The pipeline for a SPIR-V module (nwords 32-bit words, entry point
 * `entry`, execution model GLCompute).  spec[0 .. nspec) give 32-bit
 * values to the specialisation constants with SpecId 0 .. nspec-1 (spec
 * may be NULL when nspec is 0).  Pipelines are cached by a hash of the
 * words, entry, layout and constants: a second request with the same
 * arguments returns the same pipeline without compiling.  A VkPipelineCache
 * is shared by all pipelines.  The module must be valid SPIR-V for
 * info.spirv_version using only capabilities the device has (what
 * spirv-val checks): drivers may crash on invalid modules, and only the
 * magic number is checked here.  -1 when the driver rejects the module or
 * a limit is exceeded (nbuffers > max_storage_buffers, push_size >
 * max_push_constants_size or not a multiple of 4). */
/* Callers keep the returned pointer (the lookup hashes the whole module). */
KlVkPipeline *kl_vk_pipeline(const uint32_t *words, size_t nwords,
                             const char *entry, uint32_t nbuffers,
                             uint32_t push_size, const uint32_t *spec,
                             uint32_t nspec, KlDiag *d);

/* ---- built-in shaders (GLSL in shaders/) ------------------------------- */

/* Element types the built-in reduction shader combines (C64 / C128:
 * complex {re, im} pairs of float32 / float64). */
typedef enum KlVkReduceType {
    KL_VK_R_I32 = 0, KL_VK_R_U32, KL_VK_R_I64, KL_VK_R_U64, KL_VK_R_F32,
    KL_VK_R_F64, KL_VK_R_C64, KL_VK_R_C128, KL_VK_R_NTYPES
} KlVkReduceType;

/* Operations it combines with: + * min max (min(a, b) = b < a ? b : a,
 * max(a, b) = b > a ? b : a, as Python's), and & | ^ for the integer
 * types.  Complex takes + and * (CPython's product formula). */
typedef enum KlVkReduceOp {
    KL_VK_R_ADD = 0, KL_VK_R_MUL, KL_VK_R_MIN, KL_VK_R_MAX, KL_VK_R_AND,
    KL_VK_R_OR, KL_VK_R_XOR, KL_VK_R_NOPS
} KlVkReduceOp;

/* Push constants of the reduction shader, in this order (20 bytes). */
typedef struct KlVkReducePush {
    uint32_t first;     /* index of the first partial in binding 0 */
    uint32_t count;     /* number of partials */
    uint32_t stride;    /* elements between partials (2 for the real or
                           imaginary parts of complex pairs); >= 1 */
    uint32_t out;       /* index of the result element in binding 1 */
    uint32_t accumulate;    /* 1: result = result OP combined partials;
                               0: result = combined partials (the identity
                               when count is 0) */
} KlVkReducePush;

/* The reduction pipeline for (type, op, bits): binding 0 holds the
 * partials, binding 1 the result (both arrays of `type`; they may be the
 * same buffer if the ranges do not overlap); push constants
 * KlVkReducePush.  bits 8 or 16 (I32 / U32 only): the partials are
 * packed 8- or 16-bit integers (sign- / zero-extended), counted in those
 * units; 0: elements of `type`.  Dispatched as (G, 1, 1), workgroup w
 * combines the w-th of G contiguous slices of ceil(count / G) partials
 * into result[out + w] (choose G with no empty slice); (1, 1, 1)
 * combines them all.  Each workgroup combines in a fixed order (each
 * invocation folds a strided part of its slice serially, then a tree in
 * shared memory), so results are deterministic for a device and depend
 * only on count and G.  For 32-bit integers on devices with subgroup
 * arithmetic (unless env KILN_VULKAN_NO_SUBGROUP=1) the workgroup's
 * values are folded by subgroup operations instead, whose order does not
 * matter there.  NULL with KL_DIAG_VALUE when the device lacks int64 or
 * float64 for the type, or the operation does not apply to it. */
KlVkPipeline *kl_vk_reduce_pipeline(KlVkReduceType type, KlVkReduceOp op,
                                    uint32_t bits, KlDiag *d);

/* The widest G a reduction dispatch's slices should make (slices of at
 * least this many partials keep each invocation busy). */
#define KL_VK_REDUCE_SLICE 2048

/* The SPIR-V words of a built-in shader by name ("reduce_f32",
 * "reduce_i64", ...), with their count in *nwords; NULL for an unknown
 * name.  For tests and inspection. */
const uint32_t *kl_vk_builtin_spirv(const char *name, size_t *nwords);

/* ---- batches: recorded commands, one submission ------------------------- */

/* A command buffer being recorded: uploads, dispatches, fills and
 * downloads run in the order recorded, each seeing all memory effects of
 * the previous ones (a full memory barrier separates consecutive
 * commands).  Nothing runs before kl_vk_batch_submit.  A batch belongs to
 * one thread at a time; several threads may record and submit their own
 * batches concurrently (submission is serialised by one lock). */
typedef struct KlVkBatch KlVkBatch;

/* A new empty batch (recycled from earlier ones when possible). */
KlVkBatch *kl_vk_batch_begin(KlDiag *d);

/* Records the copy of src[0 .. size) into b at offset.  The bytes are read
 * now (src may be reused at once).  Commands recorded earlier in this
 * batch must not read or write that range of b: on mapped memory the copy
 * happens right away. */
int kl_vk_batch_upload(KlVkBatch *batch, KlVkBuffer *b, uint64_t offset,
                       const void *src, uint64_t size, KlDiag *d);

/* Records the copy of b[offset .. offset + size) into dst, which is
 * written during kl_vk_batch_submit, after the device finishes; dst must
 * stay valid until then.  Commands recorded later in this batch must not
 * write that range of b. */
int kl_vk_batch_download(KlVkBatch *batch, KlVkBuffer *b, uint64_t offset,
                         void *dst, uint64_t size, KlDiag *d);

/* Records filling b[offset .. offset + size) with the 32-bit word value;
 * offset and size must be multiples of 4. */
int kl_vk_batch_fill(KlVkBatch *batch, KlVkBuffer *b, uint64_t offset,
                     uint64_t size, uint32_t value, KlDiag *d);

/* Records one dispatch of p over (x, y, z) workgroups: buffers[i] is bound
 * to binding i for the pipeline's nbuffers bindings (a binding spans the
 * buffer's view, clamped to max_storage_buffer_range; the same buffer may
 * appear at several bindings), `push` gives the pipeline's push_size bytes
 * (ignored when push_size is 0).  A dispatch with a zero count records
 * nothing.  -1 when a count exceeds max_workgroup_count. */
int kl_vk_batch_dispatch(KlVkBatch *batch, KlVkPipeline *p,
                         KlVkBuffer *const *buffers, const void *push,
                         uint32_t x, uint32_t y, uint32_t z, KlDiag *d);

/* Submits the batch, waits for the device to finish it, completes the
 * downloads, and releases the batch, on success and on failure alike
 * (the batch must not be used afterwards).  -1 when the device failed
 * (device lost, out of device memory). */
int kl_vk_batch_submit(KlVkBatch *batch, KlDiag *d);

/* Releases a batch without running it (NULL is ignored). */
void kl_vk_batch_discard(KlVkBatch *batch);

#endif /* KILN_VULKAN_H */
