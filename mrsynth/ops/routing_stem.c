/* One layer of CAGR's routing stem on the CPU, fused: grouped 3x3 convolution + bias -> LayerNorm over the
 * channels of each pixel -> exact (erf) GELU, written out or summed into per-row channel totals for the global
 * average pool that ends the stem.
 *
 * Why a kernel of our own: with 1-8 channels per group oneDNN's grouped convolution runs at a fraction of its dense
 * rate, and LayerNorm and GELU then make two more passes over a full-resolution feature map. Here a tile of 8
 * pixels x 8 or 16 output channels stays in registers over the 9 taps, and the whole channel vector of each pixel
 * is normalised and activated while it is still in L1; the second layer's output is never stored at all.
 *
 * Layout: activations NHWC (the network's channels-last memory), float32. Weights are packed by the caller as
 * [block][tap][k][lane]: block = a run of `ob` output channels (8, or 16 when a group has 16 or more channels),
 * tap = 3 dy + dx, k = input channel within the group, lane = output channel within the block. Rows of all images
 * (b * H + y) are split across OpenMP threads; the caller passes torch's thread count.
 *
 * Built by mrsynth/ops/cpu_stem.py with GCC vector extensions (no intrinsics), so it compiles for any target GCC
 * knows; the -march the loader passes picks the instructions, and the constants below pick the tile for them.
 *
 * Tile shape per instruction set. The accumulators of one pass over the taps must stay in registers: on AVX2's 16
 * ymm registers, a tile of 8 pixels x 16 channels (16 registers of accumulators alone) spills, where AVX-512's 32
 * zmm registers hold it as 8. So each ISA names its native vector width and how many registers its accumulators
 * may take, and a tile's pixels are covered in passes of PASS_PX(lanes) pixels. Groups of 8 channels use the
 * in-register shuffle only on AVX-512, whose 32 registers keep the 8 permutation indices; elsewhere they broadcast
 * each input from memory, as wider groups always do. "portable" is NEON on aarch64 (32 128-bit registers) and
 * SSE2 or any other target (16 or fewer).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#define KERNEL_ISA "avx512"
#define VECTOR_LANES 16
#define ACC_REGISTERS 8
#define SHUFFLE_MAX_CG 8
#elif defined(__AVX2__) && defined(__FMA__)
#define KERNEL_ISA "avx2"
#define VECTOR_LANES 8
#define ACC_REGISTERS 8
#define SHUFFLE_MAX_CG 4
#elif defined(__aarch64__)
#define KERNEL_ISA "portable"
#define VECTOR_LANES 4
#define ACC_REGISTERS 16
#define SHUFFLE_MAX_CG 4
#else
#define KERNEL_ISA "portable"
#define VECTOR_LANES 4
#define ACC_REGISTERS 8
#define SHUFFLE_MAX_CG 4
#endif

typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef int v8i __attribute__((vector_size(32)));
/* The convolution's accumulators are arrays of native vectors only: GCC lowers a vector wider than the hardware's
 * (16 floats on AVX2, 8 on NEON) through the stack when it sits in an array, which is what made AVX2 slow. */
typedef float vec __attribute__((vector_size(4 * VECTOR_LANES), aligned(4)));
#define SHUFFLE_LANES (VECTOR_LANES < 8 ? VECTOR_LANES : 8) /* a group of <= 4 never straddles 4 lanes */
typedef float vsh __attribute__((vector_size(4 * SHUFFLE_LANES), aligned(4)));
typedef int vshi __attribute__((vector_size(4 * SHUFFLE_LANES)));

#define PX 8 /* pixels per tile (LayerNorm reduces the sums of 8 pixels at once) */
/* Pixels per pass over the taps: as many as the register budget holds accumulators of `lanes` channels for. */
#define PASS_PX(lanes) (ACC_REGISTERS * VECTOR_LANES / (lanes) < PX ? ACC_REGISTERS * VECTOR_LANES / (lanes) : PX)

/* Which tile constants this library was built with, for the loader's report and its tests. */
const char *routing_stem_isa(void) { return KERNEL_ISA; }

static inline v8 splat(float s) { return (v8){s, s, s, s, s, s, s, s}; }
static inline v8i bits_of(v8 v) { v8i b; memcpy(&b, &v, sizeof b); return b; }
static inline v8 from_bits(v8i b) { v8 v; memcpy(&v, &b, sizeof v); return v; }

/* exp(x) for x <= 0, Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2, a degree-5 polynomial, 2^n built in the
 * exponent bits. Arguments below -87 are clamped (exp(-87) ~ 1.6e-38), which erf below cannot notice. */
static inline v8 exp_nonpositive(v8 x) {
    const v8i low = x < -87.0f;
    x = from_bits((low & bits_of(splat(-87.0f))) | (~low & bits_of(x)));
    const v8i n = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, v8i); /* nearest, as x <= 0 */
    const v8 nf = __builtin_convertvector(n, v8);
    const v8 r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
    v8 p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * from_bits((n + 127) << 23);
}

/* GELU(x) = x / 2 (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7). */
static inline v8 gelu(v8 x) {
    const v8 z = x * 0.70710678118654752f;
    const v8i sign = bits_of(z) & (int)0x80000000;
    const v8 a = from_bits(bits_of(z) ^ sign);
    const v8 t = 1.0f / (1.0f + 0.3275911f * a);
    v8 poly = splat(1.061405429f);
    poly = poly * t - 1.453152027f;
    poly = poly * t + 1.421413741f;
    poly = poly * t - 0.284496736f;
    poly = poly * t + 0.254829592f;
    const v8 erf_abs = 1.0f - poly * t * exp_nonpositive(-a * a);
    return 0.5f * x * (1.0f + from_bits(bits_of(erf_abs) ^ sign));
}

/* Groups of CG <= SHUFFLE_MAX_CG channels, 8 output channels per block: the block's outputs read the block's own 8
 * input channels, so one load per pixel and tap serves all of them, and input k of each group is moved under that
 * group's outputs by an in-register shuffle: no multiply-add is spent on the zeros between groups. For CG <= 4 the
 * shuffle stays within 128-bit halves (an immediate-operand permute on x86, a lane duplicate or transpose on NEON).
 * rows[dy] points at pixel x0 - 1 of input row y + dy - 1 (NULL above or below the image); the pass covers
 * pixels p0 .. p0 + PASS_PX(8) - 1 of the tile. */
#define DEFINE_SHUFFLE(CG)                                                                                     \
    static void taps_shuffle_##CG(const float *const rows[3], size_t stride, const float *w, int p0,           \
                                  vsh acc[PASS_PX(8)][8 / SHUFFLE_LANES]) {                                    \
        const vshi lane = SHUFFLE_LANE_INDICES;                                                                \
        for (int dy = 0; dy < 3; dy++) {                                                                       \
            if (!rows[dy]) continue;                                                                           \
            for (int dx = 0; dx < 3; dx++) {                                                                   \
                const float *xp = rows[dy] + (dx + p0) * stride;                                               \
                const float *wt = w + (dy * 3 + dx) * CG * 8;                                                  \
                _Pragma("GCC unroll 8") for (int p = 0; p < PASS_PX(8); p++) {                                 \
                    _Pragma("GCC unroll 2") for (int h = 0; h < 8 / SHUFFLE_LANES; h++) {                      \
                        const vsh xv = *(const vsh *)(xp + p * stride + h * SHUFFLE_LANES);                    \
                        _Pragma("GCC unroll 8") for (int k = 0; k < CG; k++) {                                 \
                            acc[p][h] += *(const vsh *)(wt + k * 8 + h * SHUFFLE_LANES)                        \
                                         * __builtin_shuffle(xv, lane / CG * CG + k);                          \
                        }                                                                                      \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }
#if SHUFFLE_LANES == 8
#define SHUFFLE_LANE_INDICES {0, 1, 2, 3, 4, 5, 6, 7}
#else
#define SHUFFLE_LANE_INDICES {0, 1, 2, 3}
#endif
DEFINE_SHUFFLE(1)
DEFINE_SHUFFLE(2)
DEFINE_SHUFFLE(4)
#if SHUFFLE_MAX_CG >= 8
DEFINE_SHUFFLE(8)
#endif

/* Groups of cg > SHUFFLE_MAX_CG channels, OB (8 or 16) output channels per block, all in one group: each input
 * value is broadcast against the block's OB weights (OB / VECTOR_LANES native vectors), so one load feeds OB
 * multiply-adds per pixel (a stand-alone test of the 16-wide loop, convolution only, ran at about 108 GFLOP/s on
 * one AVX-512 core of the development machine with 32 channels per group). The pass covers pixels
 * p0 .. p0 + PASS_PX(OB) - 1 of the tile. */
#define DEFINE_BROADCAST(OB)                                                                                   \
    static void taps_broadcast_##OB(int cg, const float *const rows[3], size_t stride, const float *w, int p0, \
                                    vec acc[PASS_PX(OB)][OB / VECTOR_LANES]) {                                 \
        for (int dy = 0; dy < 3; dy++) {                                                                       \
            if (!rows[dy]) continue;                                                                           \
            for (int dx = 0; dx < 3; dx++) {                                                                   \
                const float *xp = rows[dy] + (dx + p0) * stride;                                               \
                const float *wt = w + (size_t)(dy * 3 + dx) * cg * OB;                                         \
                for (int k = 0; k < cg; k++) {                                                                 \
                    vec wk[OB / VECTOR_LANES];                                                                 \
                    for (int j = 0; j < OB / VECTOR_LANES; j++)                                                \
                        wk[j] = *(const vec *)(wt + k * OB + j * VECTOR_LANES);                                \
                    _Pragma("GCC unroll 8") for (int p = 0; p < PASS_PX(OB); p++) {                            \
                        const float xs = xp[p * stride + k];                                                   \
                        _Pragma("GCC unroll 4") for (int j = 0; j < OB / VECTOR_LANES; j++) acc[p][j] += wk[j] * xs; \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }
#if SHUFFLE_MAX_CG < 8
DEFINE_BROADCAST(8)
#endif
DEFINE_BROADCAST(16)

/* The broadcast form's passes over the tile's pixels 0 .. npx - 1 for OB output channels, bias first. */
#define BROADCAST_PASSES(OB)                                                                                   \
    for (int p0 = 0; p0 < npx; p0 += PASS_PX(OB)) {                                                            \
        vec acc[PASS_PX(OB)][OB / VECTOR_LANES];                                                               \
        for (int p = 0; p < PASS_PX(OB); p++)                                                                  \
            for (int j = 0; j < OB / VECTOR_LANES; j++) acc[p][j] = *(const vec *)(bias + j * VECTOR_LANES);   \
        taps_broadcast_##OB(cg, rows, stride, w, p0, acc);                                                     \
        for (int p = 0; p < PASS_PX(OB) && p0 + p < npx; p++)                                                  \
            for (int j = 0; j < OB / VECTOR_LANES; j++)                                                        \
                *(vec *)(tile + (p0 + p) * C + j * VECTOR_LANES) = acc[p][j];                                  \
    }

/* One block's convolution for the tile, pass by pass, with the bias, into the tile's pixels 0 .. npx - 1. */
static void convolve_block(int cg, const float *const rows[3], size_t stride, const float *w, const float *bias,
                           int npx, int C, float *tile) {
    if (cg >= 16) {
        BROADCAST_PASSES(16)
        return;
    }
#if SHUFFLE_MAX_CG < 8
    if (cg == 8) {
        BROADCAST_PASSES(8)
        return;
    }
#endif
    for (int p0 = 0; p0 < npx; p0 += PASS_PX(8)) {
        vsh acc[PASS_PX(8)][8 / SHUFFLE_LANES];
        for (int p = 0; p < PASS_PX(8); p++)
            for (int h = 0; h < 8 / SHUFFLE_LANES; h++) acc[p][h] = *(const vsh *)(bias + h * SHUFFLE_LANES);
        switch (cg) {
        case 1: taps_shuffle_1(rows, stride, w, p0, acc); break;
        case 2: taps_shuffle_2(rows, stride, w, p0, acc); break;
#if SHUFFLE_MAX_CG >= 8
        case 4: taps_shuffle_4(rows, stride, w, p0, acc); break;
        default: taps_shuffle_8(rows, stride, w, p0, acc); break;
#else
        default: taps_shuffle_4(rows, stride, w, p0, acc); break;
#endif
        }
        for (int p = 0; p < PASS_PX(8) && p0 + p < npx; p++)
            for (int h = 0; h < 8 / SHUFFLE_LANES; h++)
                *(vsh *)(tile + (p0 + p) * C + h * SHUFFLE_LANES) = acc[p][h];
    }
}

/* The 3x3 neighbourhood rows of one block for the tile at x0. Inside the image they point into it; at the left
 * and right edges the needed pixels are copied next to zeros in `patch`, so the tap loops never test bounds. */
static size_t neighbourhood(const float *image, int H, int W, int C, int y, int x0, int first, int width,
                            float *patch, const float *rows[3]) {
    const int inside = x0 >= 1 && x0 + PX + 1 <= W;
    for (int dy = 0; dy < 3; dy++) {
        const int yy = y + dy - 1;
        if (yy < 0 || yy >= H) {
            rows[dy] = NULL;
        } else if (inside) {
            rows[dy] = image + ((size_t)yy * W + x0 - 1) * C + first;
        } else {
            float *row = patch + (size_t)dy * (PX + 2) * width;
            memset(row, 0, sizeof(float) * (PX + 2) * width);
            for (int p = 0; p < PX + 2; p++) {
                const int xx = x0 - 1 + p;
                if (xx >= 0 && xx < W) memcpy(row + (size_t)p * width, image + ((size_t)yy * W + xx) * C + first, sizeof(float) * width);
            }
            rows[dy] = row;
        }
    }
    return inside ? (size_t)C : (size_t)width;
}

/* Lane p of the result = the sum of the 8 lanes of v[p]: the horizontal sums of 8 vectors at once. */
static inline v8 transpose_sum(const v8 v[8]) {
    const v8i even = {0, 8, 2, 10, 4, 12, 6, 14}, odd = {1, 9, 3, 11, 5, 13, 7, 15};
    const v8i low2 = {0, 1, 8, 9, 4, 5, 12, 13}, high2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const v8i low4 = {0, 1, 2, 3, 8, 9, 10, 11}, high4 = {4, 5, 6, 7, 12, 13, 14, 15};
    v8 pairs[4], quads[2];
    for (int i = 0; i < 4; i++)
        pairs[i] = __builtin_shuffle(v[2 * i], v[2 * i + 1], even) + __builtin_shuffle(v[2 * i], v[2 * i + 1], odd);
    for (int i = 0; i < 2; i++)
        quads[i] = __builtin_shuffle(pairs[2 * i], pairs[2 * i + 1], low2) + __builtin_shuffle(pairs[2 * i], pairs[2 * i + 1], high2);
    return __builtin_shuffle(quads[0], quads[1], low4) + __builtin_shuffle(quads[0], quads[1], high4);
}

static inline v8 lane(v8 v, int p) { return __builtin_shuffle(v, (v8i){p, p, p, p, p, p, p, p}); }

/* LayerNorm of each pixel's C channels (two passes, biased variance, as torch), then GELU, in place on a tile of
 * PX pixels. The per-pixel sums are reduced for all 8 pixels together, not one horizontal sum at a time. */
static void normalise_activate(float *tile, int C, const float *ln_w, const float *ln_b, float eps) {
    const int blocks = C / 8;
    v8 sums[PX] = {{0}};
    for (int p = 0; p < PX; p++)
        for (int j = 0; j < blocks; j++) sums[p] += *(const v8 *)(tile + p * C + 8 * j);
    const v8 mean = transpose_sum(sums) / (float)C;
    for (int p = 0; p < PX; p++) {
        const v8 m = lane(mean, p);
        sums[p] = splat(0.0f);
        for (int j = 0; j < blocks; j++) {
            const v8 d = *(const v8 *)(tile + p * C + 8 * j) - m;
            sums[p] += d * d;
        }
    }
    const v8 var = transpose_sum(sums) / (float)C + eps;
    v8 rstd;
    for (int p = 0; p < PX; p++) rstd[p] = 1.0f / sqrtf(var[p]);
    for (int p = 0; p < PX; p++) {
        const v8 m = lane(mean, p), r = lane(rstd, p);
        for (int j = 0; j < blocks; j++) {
            v8 *t = (v8 *)(tile + p * C + 8 * j);
            *t = gelu((*t - m) * r * *(const v8 *)(ln_w + 8 * j) + *(const v8 *)(ln_b + 8 * j));
        }
    }
}

/* x: (B, H, W, C). cg: channels per group (1, 2, 4, 8 or a multiple of 16). out: (B, H, W, C), or NULL to write
 * row_sums: (B * H, C), each row's channel totals. Returns 0, or -1 when scratch memory cannot be allocated. */
int routing_stem_layer(const float *x, int B, int H, int W, int C, int cg, const float *packed, const float *bias,
                       const float *ln_w, const float *ln_b, float eps, float *out, float *row_sums, int threads) {
    const int ob = cg >= 16 ? 16 : 8;        /* output channels per block */
    const int width = cg >= 16 ? cg : 8;     /* input channels a block reads */
    const int blocks = C / ob;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *tile = aligned_alloc(64, sizeof(float) * PX * C);
        float *patch = aligned_alloc(64, sizeof(float) * 3 * (PX + 2) * width);
        failed = !tile || !patch;
        if (tile) memset(tile, 0, sizeof(float) * PX * C); /* pixels past the right edge are normalised unused */
#pragma omp for schedule(static)
        for (int r = 0; r < B * H; r++) {
            if (failed) continue;
            const float *image = x + (size_t)(r / H) * H * W * C;
            const int y = r % H;
            float *sums = row_sums ? row_sums + (size_t)r * C : NULL;
            if (sums) memset(sums, 0, sizeof(float) * C);
            for (int x0 = 0; x0 < W; x0 += PX) {
                const int npx = W - x0 < PX ? W - x0 : PX;
                for (int blk = 0; blk < blocks; blk++) {
                    const int first = cg >= 16 ? blk * ob / cg * cg : blk * ob;
                    const float *rows[3];
                    const size_t stride = neighbourhood(image, H, W, C, y, x0, first, width, patch, rows);
                    convolve_block(cg, rows, stride, packed + (size_t)blk * 9 * cg * ob, bias + blk * ob, npx, C,
                                   tile + blk * ob);
                }
                normalise_activate(tile, C, ln_w, ln_b, eps);
                if (sums) {
                    for (int p = 0; p < npx; p++)
                        for (int c = 0; c < C; c++) sums[c] += tile[(size_t)p * C + c];
                } else {
                    memcpy(out + ((size_t)r * W + x0) * C, tile, sizeof(float) * npx * C);
                }
            }
        }
        free(patch);
        free(tile);
    }
    return failed ? -1 : 0;
}
