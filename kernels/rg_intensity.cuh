// recordgpu kernels: the FloatIntensity stage (recordgpu/augment/plan.py documents the arithmetic) on one
// value, and the pieces of its per-image statistics shared by the GPU statistics kernel and the host build:
// float32 values as ordered 32-bit keys (radix selection of order statistics), numpy's 'linear' percentile
// interpolation, and the bin search of one radix pass.
#ifndef RG_INTENSITY_CUH
#define RG_INTENSITY_CUH

#include "rg_params.cuh"

#define RG_RADIX_BINS 256     // 8-bit digits: four passes over a 32-bit key
#define RG_PCT_TARGETS 4      // order statistics per percentile pair: floor and next index of lo and hi

// The stage's input value: the source value in modality units, v = f32(p) * slope + intercept.
template <typename T>
RG_HD float rg_fint_input(T p, const RgColour& col) { return (float)p * col.w[1] + col.w[2]; }

// u = ((v - A) / D) * E + F (D == 0: (v - A) + F), then the optional clip; NaN stays NaN.
RG_HD float rg_fint_apply(float v, const RgColour& col) {
    float u = col.b == 0.f ? (v - col.a) + col.v[1] : ((v - col.a) / col.b) * col.v[0] + col.v[1];
    if (col.flags & RG_FINT_CLIP) u = u < col.v[2] ? col.v[2] : (u > col.w[0] ? col.w[0] : u);
    return u;
}

// A float as an unsigned key with the same order (negative values flipped), and back.
RG_HD unsigned int rg_float_key(float f) {
    union { float f; unsigned int u; } c;
    c.f = f;
    return (c.u & 0x80000000u) ? ~c.u : (c.u | 0x80000000u);
}

RG_HD float rg_key_float(unsigned int k) {
    union { float f; unsigned int u; } c;
    c.u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
    return c.f;
}

// numpy.percentile(method='linear') positions for percentage q of n sorted values: the two indices to
// interpolate between and the weight (numpy's index clamping at the top included).
RG_HD void rg_percentile_index(float q, rg_i64 n, rg_i64* lo, rg_i64* hi, double* gamma) {
    double vi = (double)(n - 1) * ((double)q / 100.0);
    if (vi >= (double)(n - 1)) {
        *lo = *hi = n - 1;
        *gamma = vi + 1.0;  // numpy measures from index -1 here; both ends are the same value
    } else {
        double f = floor(vi);
        *lo = (rg_i64)f;
        *hi = *lo + 1;
        *gamma = vi - f;
    }
}

// numpy's _lerp.
RG_HD double rg_lerp(double a, double b, double t) {
    double d = b - a;
    return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

// One radix pass: the bin of `hist` holding 0-based rank *rank; *rank becomes the rank inside that bin.
RG_HD int rg_select_bin(const unsigned int* hist, rg_i64* rank) {
    rg_i64 below = 0;
    for (int d = 0; d < RG_RADIX_BINS; d++) {
        if (below + (rg_i64)hist[d] > *rank) {
            *rank -= below;
            return d;
        }
        below += hist[d];
    }
    return RG_RADIX_BINS - 1;
}

// The ranks a percentile pair needs: {lo(q_lo), hi(q_lo), lo(q_hi), hi(q_hi)} and the two weights.
RG_HD void rg_percentile_targets(const RgColour& col, rg_i64 n, rg_i64* rank, double* gamma) {
    rg_percentile_index(col.w[3], n, &rank[0], &rank[1], &gamma[0]);
    rg_percentile_index(col.w[4], n, &rank[2], &rank[3], &gamma[1]);
}

// Statistics to stage constants: A and D of the formula (zscore: D = 1 for a zero deviation).
RG_HD void rg_zscore_constants(double mean, double var, float* A, float* D) {
    *A = (float)mean;
    float sd = (float)sqrt(var);
    *D = sd == 0.f ? 1.f : sd;
}

RG_HD void rg_percentile_constants(const unsigned int* keys, const double* gamma, float* A, float* D) {
    double lo = rg_lerp((double)rg_key_float(keys[0]), (double)rg_key_float(keys[1]), gamma[0]);
    double hi = rg_lerp((double)rg_key_float(keys[2]), (double)rg_key_float(keys[3]), gamma[1]);
    *A = (float)lo;
    *D = (float)(hi - lo);
}

#endif  // RG_INTENSITY_CUH
