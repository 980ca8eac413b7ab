// recordgpu kernels: portable helpers shared by the CUDA build (NVRTC) and the host build (g++).
//
// Every per-pixel function is RG_HD: __host__ __device__ under CUDA, plain inline on the host, so the
// host library computes the very same numbers as the GPU. Both builds must run IEEE single/double
// arithmetic without contraction (NVRTC: --fmad=false, g++: -ffp-contract=off).
#ifndef RG_COMMON_CUH
#define RG_COMMON_CUH

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define RG_HD __host__ __device__ __forceinline__
// rare, heavy paths stay out of line so they do not inflate the register count of the common path
#define RG_HD_COLD __host__ __device__ __noinline__
#define RG_DEVICE 1
#else
#include <math.h>
#define RG_HD inline
#define RG_HD_COLD inline
#endif

typedef unsigned char rg_u8;
typedef unsigned short rg_u16;
typedef short rg_i16;
typedef signed char rg_i8;
typedef long long rg_i64;
typedef unsigned long long rg_u64;

// --- OpenCV's rounding and saturation ----------------------------------------------------------------
// cvRound: round half to even (the default IEEE rounding mode on both sides).
RG_HD int rg_round(float v) { return (int)rintf(v); }
RG_HD int rg_round(double v) { return (int)rint(v); }
RG_HD int rg_floor(float v) { return (int)floorf(v); }
RG_HD int rg_floor(double v) { return (int)floor(v); }
RG_HD int rg_ceil(double v) { return (int)ceil(v); }

RG_HD int rg_clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
RG_HD rg_i64 rg_clampl(rg_i64 v, rg_i64 lo, rg_i64 hi) { return v < lo ? lo : (v > hi ? hi : v); }

// saturate_cast<int>(double): cvRound with the int range kept (no undefined conversion).
RG_HD rg_i64 rg_round_sat_i32(double v) {
    double r = rint(v);
    if (r > 2147483647.0) return 2147483647LL;
    if (r < -2147483648.0) return -2147483648LL;
    return (rg_i64)r;
}

// saturate_cast<short>(float): used for the fixed-point resize coefficients.
RG_HD short rg_sat_short(float v) {
    float r = rintf(v);
    return (short)(r > 32767.f ? 32767 : (r < -32768.f ? -32768 : (int)r));
}

// Per source dtype: the working type of OpenCV's resampling and saturate_cast from float/int.
template <typename T> struct RgT;
template <> struct RgT<rg_u8> {
    typedef int WT;
    enum { is_int = 1, fixpt = 1 };
    RG_HD static rg_u8 from_float(float v) {
        float r = rintf(v);
        return (rg_u8)(r <= 0.f ? 0 : (r >= 255.f ? 255 : (int)r));
    }
    RG_HD static rg_u8 from_int(int v) { return (rg_u8)rg_clampi(v, 0, 255); }
    RG_HD static rg_u8 trunc_float(float v) {  // (int) conversion, then saturate (PCA noise)
        float t = truncf(v);
        return (rg_u8)(t <= 0.f ? 0 : (t >= 255.f ? 255 : (int)t));
    }
};
template <> struct RgT<rg_u16> {
    typedef float WT;
    enum { is_int = 1, fixpt = 0 };
    RG_HD static rg_u16 from_float(float v) {
        float r = rintf(v);
        return (rg_u16)(r <= 0.f ? 0 : (r >= 65535.f ? 65535 : (int)r));
    }
    RG_HD static rg_u16 from_int(int v) { return (rg_u16)rg_clampi(v, 0, 65535); }
    RG_HD static rg_u16 trunc_float(float v) {
        float t = truncf(v);
        return (rg_u16)(t <= 0.f ? 0 : (t >= 65535.f ? 65535 : (int)t));
    }
};
template <> struct RgT<rg_i16> {
    typedef float WT;
    enum { is_int = 1, fixpt = 0 };
    RG_HD static rg_i16 from_float(float v) {
        float r = rintf(v);
        return (rg_i16)(r <= -32768.f ? -32768 : (r >= 32767.f ? 32767 : (int)r));
    }
    RG_HD static rg_i16 from_int(int v) { return (rg_i16)rg_clampi(v, -32768, 32767); }
    RG_HD static rg_i16 trunc_float(float v) {
        float t = truncf(v);
        return (rg_i16)(t <= -32768.f ? -32768 : (t >= 32767.f ? 32767 : (int)t));
    }
};
template <> struct RgT<float> {
    typedef float WT;
    enum { is_int = 0, fixpt = 0 };
    RG_HD static float from_float(float v) { return v; }
    RG_HD static float from_int(int v) { return (float)v; }
    RG_HD static float trunc_float(float v) { return v; }
};

// float32 -> IEEE half bits, round to nearest even (numpy's astype(float16)), identical on both sides.
RG_HD rg_u16 rg_float_to_half(float f) {
    union { float f; unsigned int u; } in;
    in.f = f;
    unsigned int x = in.u;
    unsigned int sign = (x >> 16) & 0x8000u;
    unsigned int mag = x & 0x7fffffffu;
    if (mag >= 0x7f800000u)  // inf or nan
        return (rg_u16)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u | ((mag >> 13) & 0x3ffu) : 0u));
    if (mag >= 0x477ff000u)  // rounds to >= 65520: overflow to inf
        return (rg_u16)(sign | 0x7c00u);
    if (mag < 0x38800000u) {  // subnormal half (or zero)
        if (mag < 0x33000000u) return (rg_u16)sign;  // below half the smallest subnormal
        unsigned int e = mag >> 23;
        unsigned int m = (mag & 0x7fffffu) | 0x800000u;
        unsigned int shift = 126u - e;  // 14 + (112 - e) - ... : value = m * 2^(e-150); half unit 2^-24
        unsigned int hm = m >> shift;
        unsigned int rem = m & ((1u << shift) - 1u);
        unsigned int halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (hm & 1u))) hm += 1u;
        return (rg_u16)(sign | hm);
    }
    unsigned int h = ((mag - 0x38000000u) >> 13);  // rebias exponent 127 -> 15
    unsigned int rem = mag & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h += 1u;
    return (rg_u16)(sign | h);
}

#endif  // RG_COMMON_CUH
