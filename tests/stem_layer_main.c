/* Test driver for mrsynth/ops/routing_stem.c on another architecture: tests/test_stem_dispatch.py cross-compiles
 * it with the kernel for aarch64 and runs it under qemu-user, so the NEON build's numbers are checked, not only its
 * compilation. Reads a stem's input and packed parameters from argv[1] (int B, H, W, C, cg, layers; float eps;
 * the NHWC input; per layer the packed weight, bias, LayerNorm weight and bias), runs the layers, and writes the
 * (B, C) spatial means of the last layer's output to argv[2], all float32 in the machine's byte order. */
#include <stdio.h>
#include <stdlib.h>

int routing_stem_layer(const float *x, int B, int H, int W, int C, int cg, const float *packed, const float *bias,
                       const float *ln_w, const float *ln_b, float eps, float *out, float *row_sums, int threads);

static float *read_floats(FILE *in, size_t n) {
    float *values = malloc(n * sizeof *values);
    if (!values || fread(values, sizeof *values, n, in) != n) exit(3);
    return values;
}

int main(int argc, char **argv) {
    FILE *in = argc == 3 ? fopen(argv[1], "rb") : NULL;
    int dims[6];
    float eps;
    if (!in || fread(dims, sizeof *dims, 6, in) != 6 || fread(&eps, sizeof eps, 1, in) != 1) return 2;
    const int B = dims[0], H = dims[1], W = dims[2], C = dims[3], cg = dims[4], layers = dims[5];
    const size_t n = (size_t)B * H * W * C;
    float *x = read_floats(in, n), *next = malloc(n * sizeof *next), *row_sums = malloc((size_t)B * H * C * sizeof *row_sums);
    if (!next || !row_sums) return 3;
    for (int layer = 0; layer < layers; layer++) {
        float *packed = read_floats(in, (size_t)9 * cg * C), *bias = read_floats(in, C);
        float *ln_w = read_floats(in, C), *ln_b = read_floats(in, C);
        const int last = layer == layers - 1;
        if (routing_stem_layer(x, B, H, W, C, cg, packed, bias, ln_w, ln_b, eps, last ? NULL : next,
                               last ? row_sums : NULL, 2))
            return 4;
        if (!last) {
            float *swap = x;
            x = next;
            next = swap;
        }
        free(packed), free(bias), free(ln_w), free(ln_b);
    }
    fclose(in);
    FILE *out = fopen(argv[2], "wb");
    if (!out) return 2;
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++) {
            double total = 0;
            for (int y = 0; y < H; y++) total += row_sums[((size_t)b * H + y) * C + c];
            const float mean = (float)(total / ((double)H * W));
            fwrite(&mean, sizeof mean, 1, out);
        }
    }
    free(x), free(next), free(row_sums);
    return fclose(out) ? 5 : 0;
}
