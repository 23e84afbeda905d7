// reduce.comp: combines the per-workgroup partials of a parallel reduction.
//
// Compiled once per element type by setup.py (-DKL_T=float, double, int,
// uint, int64_t, uint64_t; -DKL_INT64 or -DKL_FLOAT64 for the 64-bit ones);
// the operation is specialisation constant 0 (0 add, 1 mul, 2 min, 3 max).
// Dispatched as one workgroup: invocation t folds partials t, t + WG, ...
// serially, then a fixed tree in shared memory folds the WG results, so
// the order of operations, and so the result, depends only on the count.
//
// Contract (see kl_vk_reduce_pipeline in csrc/runtime/vulkan.h):
//   binding 0: partials, binding 1: result, push constants KlVkReducePush.
#version 450
#ifdef KL_INT64
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#endif

#define WG 128  // Vulkan guarantees at least 128 invocations per workgroup

layout(local_size_x = WG) in;
layout(constant_id = 0) const uint OP = 0;

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
    if (OP == 0) {
        return a + b;
    } else if (OP == 1) {
        return a * b;
    } else if (OP == 2) {
        return b < a ? b : a;
    }
    return b > a ? b : a;
}

void main()
{
    uint t = gl_LocalInvocationID.x;
    // Invocations with no partial contribute nothing: they are left out of
    // the tree below instead of contributing an identity (min and max have
    // none for floats), which keeps the fold order fixed.
    uint have = min(pc.count, WG);
    if (t < have) {
        KL_T acc = partials[pc.first + t * pc.stride];
        for (uint k = t + WG; k < pc.count; k += WG) {
            acc = combine(acc, partials[pc.first + k * pc.stride]);
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
    if (t == 0) {
        if (pc.count == 0) {
            if (pc.accumulate == 0) {
                result[pc.out_index] = KL_T(OP == 1 ? 1 : 0);
            }
        } else if (pc.accumulate != 0) {
            result[pc.out_index] = combine(result[pc.out_index], scratch[0]);
        } else {
            result[pc.out_index] = scratch[0];
        }
    }
}
