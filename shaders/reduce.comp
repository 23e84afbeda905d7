// reduce.comp: combines the partials of a parallel reduction.
//
// Compiled once per element type by setup.py (-DKL_T=int, uint, int64_t,
// uint64_t, float, double, vec2, dvec2; -DKL_INT64 / -DKL_FLOAT64 for the
// 64-bit ones, -DKL_INTEGER for integers, -DKL_COMPLEX for {re, im}
// pairs, -DKL_SUBGROUP with KL_NBITS=32 and KL_SIGNED=0/1 for the 32-bit
// integer variants that use subgroup arithmetic).  Specialisation
// constants: 0 the operation (0 add, 1 mul, 2 min, 3 max, 4 and, 5 or,
// 6 xor; and/or/xor for integers only, min and max not for complex), 1
// the width in bits of packed narrow partials (0: partials are KL_T; 8
// or 16: the 32-bit integer variants read 8- or 16-bit integers packed in
// the buffer, sign-extended by the int variant and zero-extended by the
// uint one, and combine them in 32 bits).
//
// Dispatched as (G, 1, 1): workgroup w combines the partials of the w-th
// of G contiguous slices of per = ceil(count / G) partials and stores the
// result at result[out + w].  Within a workgroup, for + and *
// (commutative), invocation t folds slice elements t, t + WG, ...
// serially, then a fixed tree in shared memory folds the WG results; for
// min and max, which must keep the earliest of equal values (0.0 and
// -0.0), invocation t folds a contiguous block and the tree joins
// neighbouring blocks, so partials combine in their order.  The order of
// operations, and so the result, depends only on count and G.  The
// subgroup variants fold their invocations' values with subgroup
// operations instead of the tree, and then the subgroups' results in
// subgroup order: they exist only for integers, whose operations are
// associative and commutative, so neither the order the device picks nor
// how it maps invocations to subgroups can change the result.
//
// Contract (see kl_vk_reduce_pipeline in csrc/runtime/vulkan.h):
//   binding 0: partials, binding 1: result, push constants KlVkReducePush.
#version 450
#ifdef KL_INT64
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#endif
#ifdef KL_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

#define WG 128  // Vulkan guarantees at least 128 invocations per workgroup

layout(local_size_x = WG) in;
layout(constant_id = 0) const uint OP = 0;
layout(constant_id = 1) const uint BITS = 0;

layout(std430, set = 0, binding = 0) readonly buffer Partials {
    KL_T partials[];
};
layout(std430, set = 0, binding = 1) buffer Result {
    KL_T result[];
};
layout(push_constant) uniform Push {
    uint first;
    uint count;
    uint stride;
    uint out_index;
    uint accumulate;
} pc;

shared KL_T scratch[WG];

KL_T combine(KL_T a, KL_T b)
{
    precise KL_T r;
#ifdef KL_COMPLEX
    if (OP == 1) {
        precise KL_T p = KL_T(a.x * b.x, a.x * b.y);
        precise KL_T q = KL_T(a.y * b.y, a.y * b.x);
        r = KL_T(p.x - q.x, p.y + q.y);
    } else {
        r = a + b;
    }
#else
    if (OP == 0) {
        r = a + b;
    } else if (OP == 1) {
        r = a * b;
    } else if (OP == 2) {
        r = b < a ? b : a;
    } else if (OP == 3) {
        r = b > a ? b : a;
#ifdef KL_INTEGER
    } else if (OP == 4) {
        r = a & b;
    } else if (OP == 5) {
        r = a | b;
    } else if (OP == 6) {
        r = a ^ b;
#endif
    } else {
        r = a;
    }
#endif
    return r;
}

// Partial k (counted from pc.first, in steps of pc.stride).
KL_T load(uint k)
{
    uint i = pc.first + k * pc.stride;
#if defined(KL_INTEGER) && !defined(KL_INT64)
    if (BITS != 0) {
        uint per_word = 32 / BITS;
        return bitfieldExtract(partials[i / per_word],
                               int((i % per_word) * BITS), int(BITS));
    }
#endif
    return partials[i];
}

#ifdef KL_SUBGROUP
// The operation's identity (integers only).
KL_T identity()
{
    KL_T ones = ~KL_T(0);
    KL_T high = KL_T(1) << (KL_NBITS - 1);
    if (OP == 1) {
        return KL_T(1);
    } else if (OP == 2) {
        return KL_SIGNED != 0 ? ~high : ones;
    } else if (OP == 3) {
        return KL_SIGNED != 0 ? high : KL_T(0);
    } else if (OP == 4) {
        return ones;
    }
    return KL_T(0);
}

KL_T subgroup_combine(KL_T v)
{
    if (OP == 0) {
        return subgroupAdd(v);
    } else if (OP == 1) {
        return subgroupMul(v);
    } else if (OP == 2) {
        return subgroupMin(v);
    } else if (OP == 3) {
        return subgroupMax(v);
    } else if (OP == 4) {
        return subgroupAnd(v);
    } else if (OP == 5) {
        return subgroupOr(v);
    }
    return subgroupXor(v);
}
#endif

void main()
{
    uint t = gl_LocalInvocationID.x;
    uint groups = gl_NumWorkGroups.x;
    uint w = gl_WorkGroupID.x;
    uint per = groups == 1 ? pc.count : (pc.count + groups - 1) / groups;
    uint lo = min(w * per, pc.count);
    uint n = min(pc.count - lo, per);
    KL_T acc;
#ifdef KL_SUBGROUP
    acc = identity();
    for (uint k = t; k < n; k += WG) {
        acc = combine(acc, load(lo + k));
    }
    acc = subgroup_combine(acc);
    if (subgroupElect()) {
        scratch[gl_SubgroupID] = acc;
    }
    barrier();
    if (t == 0) {
        // invocation 0 need not be in subgroup 0 (Vulkan promises that
        // only for full-subgroup pipelines): fold scratch[] alone, never
        // this invocation's own value
        acc = scratch[0];
        for (uint s = 1; s < gl_NumSubgroups; s++) {
            acc = combine(acc, scratch[s]);
        }
        scratch[0] = acc;
    }
    uint have = n;
#else
    // Invocations with no partial contribute nothing: they are left out of
    // the tree below instead of contributing an identity (min and max have
    // none for floats), which keeps the fold order fixed.
    uint have = min(n, WG);
    if (OP == 2 || OP == 3) {
        // min and max keep the earlier of equal values (0.0 and -0.0):
        // associative but not commutative, so partials are combined in
        // their order, each invocation folding one contiguous block and
        // the tree joining neighbouring blocks.
        uint block = (n + WG - 1) / WG;
        have = block == 0 ? 0 : (n + block - 1) / block;
        if (t < have) {
            uint k0 = t * block, k1 = min(n, k0 + block);
            acc = load(lo + k0);
            for (uint k = k0 + 1; k < k1; k++) {
                acc = combine(acc, load(lo + k));
            }
            scratch[t] = acc;
        }
        barrier();
        for (uint s = 1; s < WG; s *= 2) {
            if ((t & (2 * s - 1)) == 0 && t + s < have) {
                scratch[t] = combine(scratch[t], scratch[t + s]);
            }
            barrier();
        }
    } else {
        // + and * commute: invocation t folds the strided elements t,
        // t + WG, ... (neighbouring invocations read neighbouring
        // partials), then a tree halves the WG values
        if (t < have) {
            acc = load(lo + t);
            for (uint k = t + WG; k < n; k += WG) {
                acc = combine(acc, load(lo + k));
            }
            scratch[t] = acc;
        }
        barrier();
        for (uint half_ = WG / 2; half_ > 0; half_ /= 2) {
            if (t < half_ && t + half_ < have) {
                scratch[t] = combine(scratch[t], scratch[t + half_]);
            }
            barrier();
        }
    }
#endif
    if (t == 0) {
        uint o = pc.out_index + w;
        if (have == 0) {
            if (pc.accumulate == 0) {
#ifdef KL_COMPLEX
                result[o] = KL_T(OP == 1 ? 1 : 0, 0);
#else
                result[o] = KL_T(OP == 1 ? 1 : 0);
#endif
            }
        } else if (pc.accumulate != 0) {
            result[o] = combine(result[o], scratch[0]);
        } else {
            result[o] = scratch[0];
        }
    }
}
