// roll_shim.cpp: cuda/group_roll.cuh built as plain C++ (g++), so that the CUDA kernels' index arithmetic,
// blends and 16-bit conversions run on the CPU against the torch reference (tests/test_roll_shim.py).
//
// The shim only removes the CUDA execution-space keywords. shim_* run the per-element functions in plain
// loops; emulate_* take the kernels' own parameter lists plus a grid and run every (block, thread) of it
// through the same per-thread functions the kernels call, so that the Python launcher can be driven on CPU
// tensors (tests/test_cuda_roll.py).
#define __host__
#define __device__
#define __forceinline__ inline

#include "group_roll.cuh"

using mrsynth_roll::make_shape;
using mrsynth_roll::Shape;

namespace {

template <typename Acc, typename T>
void forward(const T* weight, const Acc* offsets, const Acc* scale, T* out, const Shape& s) {
    const long long per_sample = s.per_sample();
    for (int b = 0; b < s.batch; ++b) {
        for (int j = 0; j < s.per_sample(); ++j) {
            mrsynth_roll::store(out, b * per_sample + j, mrsynth_roll::forward_at<Acc>(weight, offsets, scale, s, b, j));
        }
    }
}

// The backward kernel's two jobs; `parts` splits each group's reduction as the launcher does, so that the
// chunk bounds are exercised too.
template <typename Acc, typename T>
void backward(const T* weight, const Acc* offsets, const Acc* scale, const T* grad_out, T* grad_weight,
              Acc* grad_offsets, Acc* grad_scale, const Shape& s, int parts) {
    for (int j = 0; j < s.per_sample(); ++j) {
        mrsynth_roll::store(grad_weight, j, mrsynth_roll::weight_grad_at<Acc>(grad_out, offsets, scale, s, j));
    }
    const int count = s.per_group();
    const int chunk = (count + parts - 1) / parts;
    for (int b = 0; b < s.batch; ++b) {
        for (int g = 0; g < s.groups; ++g) {
            const mrsynth_roll::GroupRoll<Acc> r = mrsynth_roll::group_roll(offsets, scale, s, b, g);
            Acc fx = 0, fy = 0, value = 0;
            for (int part = 0; part < parts; ++part) {
                const int begin = part * chunk;
                const int end = begin + chunk < count ? begin + chunk : count;
                mrsynth_roll::GroupSums<Acc> sums;
                sums.fx = sums.fy = sums.value = 0;
                for (int j = begin; j < end; ++j) {
                    const mrsynth_roll::GroupSums<Acc> t =
                        mrsynth_roll::group_terms_at<Acc>(weight, grad_out, r, s, b, g, j);
                    sums.fx += t.fx;
                    sums.fy += t.fy;
                    sums.value += t.value;
                }
                const mrsynth_roll::GroupSums<Acc> grads = mrsynth_roll::finish_group_grads(sums, r.scale);
                fx += grads.fx;
                fy += grads.fy;
                value += grads.value;
            }
            const long long bg = static_cast<long long>(b) * s.groups + g;
            grad_offsets[2 * bg] = fx;
            grad_offsets[2 * bg + 1] = fy;
            grad_scale[bg] = value;
        }
    }
}

}  // namespace

extern "C" {

// float64 throughout: isolates the index arithmetic from rounding.
void shim_forward_f64(const double* weight, const double* offsets, const double* scale, double* out, int batch,
                      int c_out, int c_in, int groups, int k_h, int k_w) {
    forward<double>(weight, offsets, scale, out, make_shape(batch, c_out, c_in, groups, k_h, k_w));
}

void shim_backward_f64(const double* weight, const double* offsets, const double* scale, const double* grad_out,
                       double* grad_weight, double* grad_offsets, double* grad_scale, int batch, int c_out,
                       int c_in, int groups, int k_h, int k_w, int parts) {
    backward<double>(weight, offsets, scale, grad_out, grad_weight, grad_offsets, grad_scale,
                     make_shape(batch, c_out, c_in, groups, k_h, k_w), parts);
}

// The instantiations the GPU runs: float32 sums over float32 / half / bfloat16 storage.
void shim_forward_f32(const float* weight, const float* offsets, const float* scale, float* out, int batch,
                      int c_out, int c_in, int groups, int k_h, int k_w) {
    forward<float>(weight, offsets, scale, out, make_shape(batch, c_out, c_in, groups, k_h, k_w));
}

void shim_backward_f32(const float* weight, const float* offsets, const float* scale, const float* grad_out,
                       float* grad_weight, float* grad_offsets, float* grad_scale, int batch, int c_out, int c_in,
                       int groups, int k_h, int k_w, int parts) {
    backward<float>(weight, offsets, scale, grad_out, grad_weight, grad_offsets, grad_scale,
                    make_shape(batch, c_out, c_in, groups, k_h, k_w), parts);
}

void shim_forward_f16(const mrsynth_roll::half_bits* weight, const float* offsets, const float* scale,
                      mrsynth_roll::half_bits* out, int batch, int c_out, int c_in, int groups, int k_h, int k_w) {
    forward<float>(weight, offsets, scale, out, make_shape(batch, c_out, c_in, groups, k_h, k_w));
}

void shim_forward_bf16(const mrsynth_roll::bf16_bits* weight, const float* offsets, const float* scale,
                       mrsynth_roll::bf16_bits* out, int batch, int c_out, int c_in, int groups, int k_h, int k_w) {
    forward<float>(weight, offsets, scale, out, make_shape(batch, c_out, c_in, groups, k_h, k_w));
}

void shim_backward_bf16(const mrsynth_roll::bf16_bits* weight, const float* offsets, const float* scale,
                        const mrsynth_roll::bf16_bits* grad_out, mrsynth_roll::bf16_bits* grad_weight,
                        float* grad_offsets, float* grad_scale, int batch, int c_out, int c_in, int groups, int k_h,
                        int k_w, int parts) {
    backward<float>(weight, offsets, scale, grad_out, grad_weight, grad_offsets, grad_scale,
                    make_shape(batch, c_out, c_in, groups, k_h, k_w), parts);
}

// The 16-bit conversions, element-wise.
void shim_float_to_half(const float* in, unsigned short* out, long long count) {
    for (long long i = 0; i < count; ++i) out[i] = mrsynth_roll::float_to_half(in[i]);
}
void shim_half_to_float(const unsigned short* in, float* out, long long count) {
    for (long long i = 0; i < count; ++i) out[i] = mrsynth_roll::half_to_float(in[i]);
}
void shim_float_to_bf16(const float* in, unsigned short* out, long long count) {
    for (long long i = 0; i < count; ++i) out[i] = mrsynth_roll::float_to_bf16(in[i]);
}
void shim_bf16_to_float(const unsigned short* in, float* out, long long count) {
    for (long long i = 0; i < count; ++i) out[i] = mrsynth_roll::bf16_to_float(in[i]);
}

}  // extern "C"

namespace {

template <typename T>
void emulate_forward(int grid_x, int grid_y, int block_dim, MRSYNTH_FORWARD_PARAMS(T)) {
    const Shape s = make_shape(batch, c_out, c_in, groups, k_h, k_w);
    for (int by = 0; by < grid_y; ++by) {
        for (int bx = 0; bx < grid_x; ++bx) {
            for (int thread = 0; thread < block_dim; ++thread) {
                mrsynth_roll::Position at;
                at.block_x = bx;
                at.block_y = by;
                at.grid_x = grid_x;
                at.grid_y = grid_y;
                at.thread = thread;
                at.block_dim = block_dim;
                mrsynth_roll::forward_thread<float>(weight, offsets, scale, out, s, at);
            }
        }
    }
}

// The backward kernel's block roles; the block-wide sum becomes a plain sum over the block's threads.
template <typename T>
void emulate_backward(int grid_x, int block_dim, MRSYNTH_BACKWARD_PARAMS(T)) {
    const Shape s = make_shape(batch, c_out, c_in, groups, k_h, k_w);
    for (int block = 0; block < grid_x; ++block) {
        if (block < weight_blocks) {
            for (int thread = 0; thread < block_dim; ++thread) {
                mrsynth_roll::weight_grad_thread<float>(grad_out, offsets, scale, grad_weight, s, block,
                                                        weight_blocks, thread, block_dim);
            }
            continue;
        }
        const mrsynth_roll::ReductionTask task = mrsynth_roll::reduction_task(block, weight_blocks, parts, s);
        const mrsynth_roll::GroupRoll<float> r = mrsynth_roll::group_roll(offsets, scale, s, task.b, task.g);
        mrsynth_roll::GroupSums<float> sums;
        sums.fx = sums.fy = sums.value = 0.0f;
        for (int thread = 0; thread < block_dim; ++thread) {
            const mrsynth_roll::GroupSums<float> t =
                mrsynth_roll::reduction_thread<float>(weight, grad_out, r, s, task, thread, block_dim);
            sums.fx += t.fx;
            sums.fy += t.fy;
            sums.value += t.value;
        }
        const mrsynth_roll::GroupSums<float> grads = mrsynth_roll::finish_group_grads(sums, r.scale);
        float* dst = group_partials + mrsynth_roll::partial_index(task, parts);
        dst[0] = grads.fx;
        dst[1] = grads.fy;
        dst[2] = grads.value;
    }
}

}  // namespace

#define MRSYNTH_EMULATED_KERNELS(SUFFIX, TYPE)                                                               \
    extern "C" void emulate_group_roll_forward_##SUFFIX(int grid_x, int grid_y, int block_dim,               \
                                                        MRSYNTH_FORWARD_PARAMS(TYPE)) {                      \
        emulate_forward<TYPE>(grid_x, grid_y, block_dim, weight, offsets, scale, out, batch, c_out, c_in,    \
                              groups, k_h, k_w);                                                             \
    }                                                                                                        \
    extern "C" void emulate_group_roll_backward_##SUFFIX(int grid_x, int block_dim,                          \
                                                         MRSYNTH_BACKWARD_PARAMS(TYPE)) {                    \
        emulate_backward<TYPE>(grid_x, block_dim, weight, offsets, scale, grad_out, grad_weight,             \
                               group_partials, batch, c_out, c_in, groups, k_h, k_w, weight_blocks, parts);   \
    }

MRSYNTH_EMULATED_KERNELS(f32, float)
MRSYNTH_EMULATED_KERNELS(f16, mrsynth_roll::half_bits)
MRSYNTH_EMULATED_KERNELS(bf16, mrsynth_roll::bf16_bits)
