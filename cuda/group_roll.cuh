// group_roll.cuh: the arithmetic of the batched group-wise roll (AGI-Net, Eq. 4), shared by the CUDA kernels
// in group_roll.cu and by a CPU build (tests/roll_shim.cpp) that checks it against the torch reference.
//
// Everything here is __host__ __device__ and needs no header at all: NVRTC (through CuPy) compiles it without
// an include path, and g++ compiles it once the shim defines __host__, __device__ and __forceinline__ away.
// The loader (mrsynth/ops/cupy_roll.py) pastes this file into group_roll.cu's text before compiling, so that
// CuPy's kernel cache, keyed on the source text, sees every change of this file too.
//
// Semantics (the oracle is mrsynth.models.roll.rolled_kernel_reference):
//   weight W (C_out, C_in, k_h, k_w), offsets (B, n, 2) = (ox, oy), scale lambda (B, n); group g holds the
//   input channels [g * C_in / n, (g + 1) * C_in / n). With s = floor(o), f = o - s per axis,
//   out[b, o, c, y, x] = lambda[b, g] * ( (1-fx)(1-fy) W[y-sy, x-sx]   + fx(1-fy) W[y-sy, x-sx-1]
//                                        + (1-fx)fy   W[y-sy-1, x-sx] + fx fy    W[y-sy-1, x-sx-1] )
//   with indices taken modulo k (torch.roll's sign: roll(v, s)[j] = v[j - s]).
#ifndef MRSYNTH_GROUP_ROLL_CUH
#define MRSYNTH_GROUP_ROLL_CUH

#define MRS_HD __host__ __device__ __forceinline__

namespace mrsynth_roll {

// ---------------------------------------------------------------------------------------------------------
// 16-bit storage types. CuPy's NVRTC build has no include path for cuda_bf16.h and DLPack in CuPy < 14 has no
// bfloat16, so both half types travel as raw 16-bit words (the kernels receive raw pointers) and are widened
// to float here with exact bit arithmetic, which the CPU shim checks bit for bit against torch's conversions.
struct half_bits {
    unsigned short bits;
};
struct bf16_bits {
    unsigned short bits;
};

MRS_HD unsigned int float_to_bits(float value) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(value);
#else
    unsigned int bits;
    __builtin_memcpy(&bits, &value, sizeof bits);
    return bits;
#endif
}

MRS_HD float bits_to_float(unsigned int bits) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(bits);
#else
    float value;
    __builtin_memcpy(&value, &bits, sizeof value);
    return value;
#endif
}

MRS_HD float half_to_float(unsigned short h) {
    const unsigned int sign = static_cast<unsigned int>(h & 0x8000u) << 16;
    const unsigned int exponent = (h >> 10) & 0x1fu;
    const unsigned int mantissa = h & 0x3ffu;
    if (exponent == 0u) {  // zero or subnormal: mantissa * 2^-24 is exact in float
        const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31u) {  // inf or NaN
        return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
    }
    return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));  // rebias 15 -> 127
}

// float -> half, round to nearest even (as torch and __float2half_rn do).
MRS_HD unsigned short float_to_half(float value) {
    unsigned int bits = float_to_bits(value);
    const unsigned short sign = static_cast<unsigned short>((bits >> 16) & 0x8000u);
    bits &= 0x7fffffffu;
    unsigned int magnitude;
    if (bits >= 0x7f800000u) {
        magnitude = bits > 0x7f800000u ? 0x7e00u : 0x7c00u;  // NaN stays a (quiet) NaN, inf stays inf
    } else if (bits >= 0x477ff000u) {
        magnitude = 0x7c00u;  // >= 65520 rounds to inf
    } else if (bits < 0x38800000u) {
        // Below half's smallest normal 2^-14: adding 0.5 aligns the value to float's ulp at 0.5, which is
        // 2^-24 = half's subnormal step, so the FPU's own round-to-nearest-even does the rounding.
        magnitude = float_to_bits(bits_to_float(bits) + 0.5f) - 0x3f000000u;
    } else {
        const unsigned int odd = (bits >> 13) & 1u;
        magnitude = (bits + 0xc8000fffu + odd) >> 13;  // rebias 127 -> 15, then round half to even
    }
    return static_cast<unsigned short>(sign | magnitude);
}

MRS_HD float bf16_to_float(unsigned short b) { return bits_to_float(static_cast<unsigned int>(b) << 16); }

// float -> bfloat16, round to nearest even (torch's rule, NaN -> 0x7fc0).
MRS_HD unsigned short float_to_bf16(float value) {
    const unsigned int bits = float_to_bits(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
    return static_cast<unsigned short>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// Widen a stored element to the accumulation type; store an accumulated value back.
MRS_HD float widen(float v) { return v; }
MRS_HD double widen(double v) { return v; }
MRS_HD float widen(half_bits v) { return half_to_float(v.bits); }
MRS_HD float widen(bf16_bits v) { return bf16_to_float(v.bits); }

MRS_HD void store(float* dst, long long i, float v) { dst[i] = v; }
MRS_HD void store(double* dst, long long i, double v) { dst[i] = v; }
MRS_HD void store(half_bits* dst, long long i, float v) { dst[i].bits = float_to_half(v); }
MRS_HD void store(bf16_bits* dst, long long i, float v) { dst[i].bits = float_to_bf16(v); }

// ---------------------------------------------------------------------------------------------------------
// Index arithmetic.

MRS_HD float floor_of(float v) {
#ifdef __CUDA_ARCH__
    return floorf(v);
#else
    return __builtin_floorf(v);
#endif
}

MRS_HD double floor_of(double v) {
#ifdef __CUDA_ARCH__
    return floor(v);
#else
    return __builtin_floor(v);
#endif
}

// True mathematical modulo (the result is in [0, k) for negative v too, unlike C's %).
MRS_HD int wrap(int v, int k) {
    const int m = v % k;
    return m < 0 ? m + k : m;
}

// Modulo for v in [-k, 2k): one compare instead of a division, for indices near the kernel window.
MRS_HD int wrap_near(int v, int k) { return v < 0 ? v + k : (v >= k ? v - k : v); }

// One axis of a float roll: the integer shift s = floor(o) reduced modulo k, and the fraction f = o - s that
// weights the floor+1 roll. The fraction comes from the unreduced floor so that it equals the reference's
// bit for bit; shifts beyond +-2^30 saturate there (float offsets that large have no fraction left anyway),
// and a NaN offset keeps its NaN fraction, so the result is NaN as in the reference, with in-range indices.
template <typename Acc>
struct AxisRoll {
    int shift;
    Acc frac;
};

template <typename Acc>
MRS_HD AxisRoll<Acc> axis_roll(Acc offset, int k) {
    const Acc floor_value = floor_of(offset);
    const Acc limit = static_cast<Acc>(1073741824.0);
    Acc bounded = floor_value;
    if (!(bounded == bounded)) bounded = static_cast<Acc>(0);
    if (bounded > limit) bounded = limit;
    if (bounded < -limit) bounded = -limit;
    AxisRoll<Acc> roll;
    roll.shift = wrap(static_cast<int>(bounded), k);
    roll.frac = offset - floor_value;
    return roll;
}

// The problem's sizes. Flat indices within one sample's kernels fit in int (the launcher checks that
// C_out * C_in * k_h * k_w < 2^31); only the batch stride needs 64 bits.
struct Shape {
    int batch;
    int c_out;
    int c_in;
    int groups;
    int k_h;
    int k_w;

    MRS_HD int group_channels() const { return c_in / groups; }
    MRS_HD int window() const { return k_h * k_w; }
    MRS_HD int per_sample() const { return c_out * c_in * k_h * k_w; }
    MRS_HD int per_group() const { return c_out * group_channels() * k_h * k_w; }
};

// The roll of one (sample, group): both axes and lambda.
template <typename Acc>
struct GroupRoll {
    AxisRoll<Acc> x;
    AxisRoll<Acc> y;
    Acc scale;
};

template <typename Acc>
MRS_HD GroupRoll<Acc> group_roll(const Acc* offsets, const Acc* scale, const Shape& s, int b, int g) {
    const long long bg = static_cast<long long>(b) * s.groups + g;
    GroupRoll<Acc> r;
    r.x = axis_roll(offsets[2 * bg], s.k_w);
    r.y = axis_roll(offsets[2 * bg + 1], s.k_h);
    r.scale = scale[bg];
    return r;
}

// The four source taps that out[y, x] blends (forward, gather form): rows y - sy and y - sy - 1, columns
// x - sx and x - sx - 1, each modulo the kernel size, as offsets into one k_h x k_w tile.
struct Taps {
    int t00;  // (y - sy,     x - sx)     weight (1 - fx)(1 - fy)
    int t01;  // (y - sy,     x - sx - 1) weight fx (1 - fy)
    int t10;  // (y - sy - 1, x - sx)     weight (1 - fx) fy
    int t11;  // (y - sy - 1, x - sx - 1) weight fx fy
};

// Flat indices of the four taps at rows y0, y1 and columns x0, x1 of a k_h x k_w kernel.
MRS_HD Taps taps_at(int y0, int y1, int x0, int x1, int k_w) {
    Taps t;
    t.t00 = y0 * k_w + x0;
    t.t01 = y0 * k_w + x1;
    t.t10 = y1 * k_w + x0;
    t.t11 = y1 * k_w + x1;
    return t;
}

template <typename Acc>
MRS_HD Taps source_taps(int y, int x, const GroupRoll<Acc>& r, int k_h, int k_w) {
    const int y0 = wrap_near(y - r.y.shift, k_h);
    const int x0 = wrap_near(x - r.x.shift, k_w);
    return taps_at(y0, wrap_near(y0 - 1, k_h), x0, wrap_near(x0 - 1, k_w), k_w);
}

// The reverse map (backward, gather form): the four outputs that read source W[p, q] are rows p + sy and
// p + sy + 1, columns q + sx and q + sx + 1, with the same four weights as in Taps.
template <typename Acc>
MRS_HD Taps destination_taps(int p, int q, const GroupRoll<Acc>& r, int k_h, int k_w) {
    const int y0 = wrap_near(p + r.y.shift, k_h);
    const int x0 = wrap_near(q + r.x.shift, k_w);
    return taps_at(y0, wrap_near(y0 + 1, k_h), x0, wrap_near(x0 + 1, k_w), k_w);
}

// The bilinear blend of four tap values and its derivatives with respect to the two fractions.
template <typename Acc>
struct Blend {
    Acc value;
    Acc d_fx;
    Acc d_fy;
};

template <typename Acc>
MRS_HD Blend<Acc> blend(Acc v00, Acc v01, Acc v10, Acc v11, Acc fx, Acc fy) {
    const Acc one = static_cast<Acc>(1);
    const Acc top = (one - fx) * v00 + fx * v01;     // row y - sy
    const Acc bottom = (one - fx) * v10 + fx * v11;  // row y - sy - 1
    Blend<Acc> out;
    out.value = (one - fy) * top + fy * bottom;
    out.d_fx = (one - fy) * (v01 - v00) + fy * (v11 - v10);
    out.d_fy = bottom - top;
    return out;
}

// Where a within-sample flat index j = ((o * C_in + c) * k_h + y) * k_w + x points.
struct Element {
    int tile;  // o * C_in + c: which k_h x k_w tile
    int c;     // input channel
    int y;
    int x;
};

MRS_HD Element element_at(int j, const Shape& s) {
    const int window = s.window();
    Element e;
    e.tile = j / window;
    const int within = j - e.tile * window;
    e.y = within / s.k_w;
    e.x = within - e.y * s.k_w;
    e.c = e.tile % s.c_in;
    return e;
}

// ---------------------------------------------------------------------------------------------------------
// Per-thread work of the three jobs. The kernels and the CPU shim both loop over these.

// Forward: the rolled kernel's value at (b, j).
template <typename Acc, typename T>
MRS_HD Acc forward_at(const T* weight, const Acc* offsets, const Acc* scale, const Shape& s, int b, int j) {
    const Element e = element_at(j, s);
    const GroupRoll<Acc> r = group_roll(offsets, scale, s, b, e.c / s.group_channels());
    const Taps t = source_taps(e.y, e.x, r, s.k_h, s.k_w);
    const T* w = weight + static_cast<long long>(e.tile) * s.window();
    const Blend<Acc> v = blend<Acc>(widen(w[t.t00]), widen(w[t.t01]), widen(w[t.t10]), widen(w[t.t11]),
                                    r.x.frac, r.y.frac);
    return r.scale * v.value;
}

// Gradient of the shared weight at j = (o, c, p, q): the sum over the batch of lambda times the reverse roll of
// the output gradient. Each thread owns one weight element, so no atomics are needed.
template <typename Acc, typename T>
MRS_HD Acc weight_grad_at(const T* grad_out, const Acc* offsets, const Acc* scale, const Shape& s, int j) {
    const Element e = element_at(j, s);
    const int g = e.c / s.group_channels();
    const long long per_sample = s.per_sample();
    const long long tile_start = static_cast<long long>(e.tile) * s.window();
    Acc total = static_cast<Acc>(0);
    for (int b = 0; b < s.batch; ++b) {
        const GroupRoll<Acc> r = group_roll(offsets, scale, s, b, g);
        const Taps t = destination_taps(e.y, e.x, r, s.k_h, s.k_w);
        const T* go = grad_out + b * per_sample + tile_start;
        const Blend<Acc> v = blend<Acc>(widen(go[t.t00]), widen(go[t.t01]), widen(go[t.t10]), widen(go[t.t11]),
                                        r.x.frac, r.y.frac);
        total += r.scale * v.value;
    }
    return total;
}

// Contribution of one element of group (b, g) to the sums behind the offset and scale gradients:
// grad_out * d blend / d fx, grad_out * d blend / d fy and grad_out * blend. `j` runs over the group's
// C_out x (C_in / n) x k_h x k_w elements, ordered (o, c_local, y, x).
template <typename Acc>
struct GroupSums {
    Acc fx;
    Acc fy;
    Acc value;
};

template <typename Acc, typename T>
MRS_HD GroupSums<Acc> group_terms_at(const T* weight, const T* grad_out, const GroupRoll<Acc>& r, const Shape& s,
                                     int b, int g, int j) {
    const int window = s.window();
    const int cg = s.group_channels();
    const int local_tile = j / window;  // o * cg + c_local
    const int within = j - local_tile * window;
    const int y = within / s.k_w;
    const int x = within - y * s.k_w;
    const int o = local_tile / cg;
    const int c = g * cg + (local_tile - o * cg);
    const long long tile = static_cast<long long>(o) * s.c_in + c;
    const T* w = weight + tile * window;
    const Taps t = source_taps(y, x, r, s.k_h, s.k_w);
    const Blend<Acc> v = blend<Acc>(widen(w[t.t00]), widen(w[t.t01]), widen(w[t.t10]), widen(w[t.t11]),
                                    r.x.frac, r.y.frac);
    const Acc go = widen(grad_out[static_cast<long long>(b) * s.per_sample() + tile * window + within]);
    GroupSums<Acc> sums;
    sums.fx = go * v.d_fx;
    sums.fy = go * v.d_fy;
    sums.value = go * v.value;
    return sums;
}

// From the group's sums to (d ox, d oy, d lambda): out = lambda * blend, and d fx / d ox = 1 (floor is
// piecewise constant), so d ox = lambda * sum(grad_out * d blend / d fx); d lambda = sum(grad_out * blend).
template <typename Acc>
MRS_HD GroupSums<Acc> finish_group_grads(const GroupSums<Acc>& sums, Acc scale) {
    GroupSums<Acc> grads;
    grads.fx = scale * sums.fx;
    grads.fy = scale * sums.fy;
    grads.value = sums.value;
    return grads;
}

// ---------------------------------------------------------------------------------------------------------
// One thread's share of each kernel. The CUDA kernels call these with their blockIdx / threadIdx; the CPU
// emulator in tests/roll_shim.cpp calls them for every (block, thread) of the same grid, so the grid-stride
// loops, block roles and reduction slices are checked on the CPU too. Only the block-wide sum is GPU-only.

struct Position {
    int block_x;
    int block_y;
    int grid_x;
    int grid_y;
    int thread;
    int block_dim;
};

// Forward: grid (x: any, y: batch rows), each thread strides over one sample's kernels.
template <typename Acc, typename T>
MRS_HD void forward_thread(const T* weight, const Acc* offsets, const Acc* scale, T* out, const Shape& s,
                           const Position& at) {
    const long long per_sample = s.per_sample();
    const long long stride = static_cast<long long>(at.grid_x) * at.block_dim;
    for (int b = at.block_y; b < s.batch; b += at.grid_y) {
        for (long long j = static_cast<long long>(at.block_x) * at.block_dim + at.thread; j < per_sample;
             j += stride) {
            store(out, b * per_sample + j, forward_at<Acc>(weight, offsets, scale, s, b, static_cast<int>(j)));
        }
    }
}

// Backward, blocks [0, weight_blocks): each thread strides over weight elements and owns their gradient.
template <typename Acc, typename T>
MRS_HD void weight_grad_thread(const T* grad_out, const Acc* offsets, const Acc* scale, T* grad_weight,
                               const Shape& s, int block, int weight_blocks, int thread, int block_dim) {
    const long long count = s.per_sample();
    const long long stride = static_cast<long long>(weight_blocks) * block_dim;
    for (long long j = static_cast<long long>(block) * block_dim + thread; j < count; j += stride) {
        store(grad_weight, j, weight_grad_at<Acc>(grad_out, offsets, scale, s, static_cast<int>(j)));
    }
}

// Backward, blocks [weight_blocks, weight_blocks + B * n * parts): block -> (sample, group, slice).
struct ReductionTask {
    int b;
    int g;
    int bg;  // b * n + g
    int part;
    int begin;  // the slice [begin, end) of the group's C_out x (C_in / n) x k_h x k_w elements
    int end;
};

MRS_HD ReductionTask reduction_task(int block, int weight_blocks, int parts, const Shape& s) {
    const int task = block - weight_blocks;
    ReductionTask t;
    t.part = task % parts;
    t.bg = task / parts;
    t.b = t.bg / s.groups;
    t.g = t.bg - t.b * s.groups;
    const int count = s.per_group();
    const int chunk = (count + parts - 1) / parts;
    t.begin = t.part * chunk;
    t.end = t.begin + chunk < count ? t.begin + chunk : count;
    if (t.begin > t.end) t.begin = t.end;
    return t;
}

// Where a reduction block writes its (d ox, d oy, d lambda) partial sums.
MRS_HD long long partial_index(const ReductionTask& t, int parts) {
    return 3 * (static_cast<long long>(t.bg) * parts + t.part);
}

// One thread's sums over its strided share of the block's slice.
template <typename Acc, typename T>
MRS_HD GroupSums<Acc> reduction_thread(const T* weight, const T* grad_out, const GroupRoll<Acc>& r, const Shape& s,
                                       const ReductionTask& t, int thread, int block_dim) {
    GroupSums<Acc> sums;
    sums.fx = sums.fy = sums.value = static_cast<Acc>(0);
    for (int j = t.begin + thread; j < t.end; j += block_dim) {
        const GroupSums<Acc> terms = group_terms_at<Acc>(weight, grad_out, r, s, t.b, t.g, j);
        sums.fx += terms.fx;
        sums.fy += terms.fy;
        sums.value += terms.value;
    }
    return sums;
}

MRS_HD Shape make_shape(int batch, int c_out, int c_in, int groups, int k_h, int k_w) {
    Shape s;
    s.batch = batch;
    s.c_out = c_out;
    s.c_in = c_in;
    s.groups = groups;
    s.k_h = k_h;
    s.k_w = k_w;
    return s;
}

}  // namespace mrsynth_roll

// The kernels' parameter lists, written once: group_roll.cu's kernels and the CPU emulator share them, and
// mrsynth/ops/cupy_roll.py passes its arguments in this order (a test holds it to that).
#define MRSYNTH_FORWARD_PARAMS(TYPE)                                                                   \
    const TYPE *__restrict__ weight, const float *__restrict__ offsets, const float *__restrict__ scale, \
        TYPE *__restrict__ out, int batch, int c_out, int c_in, int groups, int k_h, int k_w
#define MRSYNTH_BACKWARD_PARAMS(TYPE)                                                                  \
    const TYPE *__restrict__ weight, const float *__restrict__ offsets, const float *__restrict__ scale, \
        const TYPE *__restrict__ grad_out, TYPE *__restrict__ grad_weight,                             \
        float *__restrict__ group_partials, int batch, int c_out, int c_in, int groups, int k_h, int k_w, \
        int weight_blocks, int parts

#endif  // MRSYNTH_GROUP_ROLL_CUH
