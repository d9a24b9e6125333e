// group_roll.cu: the batched group-wise roll of AGI-Net (paper Eq. 4, "RollFunc"), forward and backward.
//
// Loaded by mrsynth/ops/cupy_roll.py with cupy.RawModule (NVRTC) and launched on PyTorch's current stream with
// raw device pointers. All arithmetic, and each thread's share of the work, lives in group_roll.cuh (pasted in
// here by the loader), which a CPU build tests against the torch reference; this file adds the block-wide sum
// and the entry points.
//
// Kernels (extern "C", one pair per storage type f32 / f16 / bf16; offsets and lambda are float32, and every
// sum is float32):
//   group_roll_forward_<t>(MRSYNTH_FORWARD_PARAMS)
//       grid (x: any, y: up to B), grid-stride; out (B, C_out, C_in, k_h, k_w) in the weight's type.
//   group_roll_backward_<t>(MRSYNTH_BACKWARD_PARAMS)
//       One launch computes every gradient. Blocks [0, weight_blocks) own weight elements and sum over the
//       batch (gather form, no atomics). The next B * n * parts blocks each reduce one slice of one (sample,
//       group) into group_partials[(b * n + g) * parts + part][0..2] = partial (d ox, d oy, d lambda), which the
//       launcher adds over `parts` (a fixed order: deterministic, no atomics either).
//       weight_blocks = 0 or parts = 0 skips a gradient nobody asked for.
// Block size: any multiple of 32 up to 1024 (the launcher uses 256).
#include "group_roll.cuh"

namespace mrsynth_roll {

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Sum three values over the block; the totals are valid in thread 0. Every thread of the block must call it.
__device__ __forceinline__ void block_sum3(float& a, float& b, float& c) {
    __shared__ float partial[3][32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    a = warp_sum(a);
    b = warp_sum(b);
    c = warp_sum(c);
    if (lane == 0) {
        partial[0][warp] = a;
        partial[1][warp] = b;
        partial[2][warp] = c;
    }
    __syncthreads();
    if (warp == 0) {
        const int warps = static_cast<int>(blockDim.x >> 5);
        a = warp_sum(lane < warps ? partial[0][lane] : 0.0f);
        b = warp_sum(lane < warps ? partial[1][lane] : 0.0f);
        c = warp_sum(lane < warps ? partial[2][lane] : 0.0f);
    }
}

template <typename T>
__device__ __forceinline__ void forward_kernel(MRSYNTH_FORWARD_PARAMS(T)) {
    Position at;
    at.block_x = static_cast<int>(blockIdx.x);
    at.block_y = static_cast<int>(blockIdx.y);
    at.grid_x = static_cast<int>(gridDim.x);
    at.grid_y = static_cast<int>(gridDim.y);
    at.thread = static_cast<int>(threadIdx.x);
    at.block_dim = static_cast<int>(blockDim.x);
    forward_thread<float>(weight, offsets, scale, out, make_shape(batch, c_out, c_in, groups, k_h, k_w), at);
}

template <typename T>
__device__ __forceinline__ void backward_kernel(MRSYNTH_BACKWARD_PARAMS(T)) {
    const Shape s = make_shape(batch, c_out, c_in, groups, k_h, k_w);
    const int block = static_cast<int>(blockIdx.x);
    const int thread = static_cast<int>(threadIdx.x);
    const int block_dim = static_cast<int>(blockDim.x);
    if (block < weight_blocks) {  // block-uniform branch, so the reduction's __syncthreads stays legal
        weight_grad_thread<float>(grad_out, offsets, scale, grad_weight, s, block, weight_blocks, thread, block_dim);
        return;
    }
    const ReductionTask task = reduction_task(block, weight_blocks, parts, s);
    const GroupRoll<float> r = group_roll(offsets, scale, s, task.b, task.g);
    GroupSums<float> sums = reduction_thread<float>(weight, grad_out, r, s, task, thread, block_dim);
    block_sum3(sums.fx, sums.fy, sums.value);
    if (thread == 0) {
        const GroupSums<float> grads = finish_group_grads(sums, r.scale);
        float* dst = group_partials + partial_index(task, parts);
        dst[0] = grads.fx;
        dst[1] = grads.fy;
        dst[2] = grads.value;
    }
}

}  // namespace mrsynth_roll

// Unmangled entry points, so that CuPy finds them by plain name without name expressions.
#define MRSYNTH_GROUP_ROLL_KERNELS(SUFFIX, TYPE)                                                           \
    extern "C" __global__ void group_roll_forward_##SUFFIX(MRSYNTH_FORWARD_PARAMS(TYPE)) {                 \
        mrsynth_roll::forward_kernel<TYPE>(weight, offsets, scale, out, batch, c_out, c_in, groups, k_h, k_w); \
    }                                                                                                      \
    extern "C" __global__ void group_roll_backward_##SUFFIX(MRSYNTH_BACKWARD_PARAMS(TYPE)) {               \
        mrsynth_roll::backward_kernel<TYPE>(weight, offsets, scale, grad_out, grad_weight, group_partials,  \
                                            batch, c_out, c_in, groups, k_h, k_w, weight_blocks, parts);    \
    }

MRSYNTH_GROUP_ROLL_KERNELS(f32, float)
MRSYNTH_GROUP_ROLL_KERNELS(f16, mrsynth_roll::half_bits)
MRSYNTH_GROUP_ROLL_KERNELS(bf16, mrsynth_roll::bf16_bits)
