// recordgpu CPU fast path: the host executor's most common plans in one pass each.
//
// * 8-bit images: bilinear resize of only the output window that survives the crop, fused with the float32
//   normalisation and the planar (C, H, W) write, optionally mirrored. The numbers are those of
//   cv::resize(INTER_LINEAR) on CV_8U followed by the crop and Normalize (the host executor's OpenCV path,
//   MXNet's numbers): the same coefficient tables (rg_axis_coeffs of rg_resize.cuh), OpenCV's separable
//   fixed-point arithmetic (horizontal int sums of 11-bit coefficients, the vertical step
//   ((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2), then (v - mean) * mult + bias in float32.
//   A crop only selects which resized pixels to compute, so a centre crop of 224 from a 256-short-side resize
//   computes 224 x 224 pixels instead of the whole resized image, which is never materialised.
// * 16-bit images (uint16, int16) with at most a crop: (v - mean) * mult + bias straight into the planes.
//
// Built by recordgpu/kernels/host.py with the host build's flags but -O3; SSE2 where available (every
// x86-64), plain C++ elsewhere.
#include <vector>

#include "rg_resize.cuh"

// RG_NO_SIMD builds the plain C++ of every loop (what non-x86 machines run; the tests build it too)
#if defined(__SSE2__) && !defined(RG_NO_SIMD)
#define RG_SSE2 1
#include <emmintrin.h>
#endif

namespace {

#ifdef RG_SSE2
inline __m128i zero() { return _mm_setzero_si128(); }
#endif

// One axis of cv::resize(INTER_LINEAR) for output indices [first, first + n): source index and the 11-bit
// weights of the two taps. x: a tap past the last column is folded onto it (OpenCV's xmax branch: weight 2048).
struct Axis {
    std::vector<int> src, w0, w1;
    Axis(int first, int n, int ssize, int dsize, bool is_x) : src(n), w0(n), w1(n) {
        double inv_scale = (double)dsize / ssize, scale = 1. / inv_scale;
        for (int i = 0; i < n; i++) {
            float c[2];
            int s = rg_axis_coeffs(RG_RZ_LINEAR, first + i, scale, inv_scale, ssize, is_x, c);
            src[i] = s;
            w0[i] = rg_sat_short(c[0] * RG_COEF_SCALE);
            w1[i] = rg_sat_short(c[1] * RG_COEF_SCALE);
            if (is_x && s + 1 >= ssize) { w0[i] = RG_COEF_SCALE; w1[i] = 0; }
        }
    }
};

// The horizontal pass of one source row into per-channel planes of (sum >> 4) as int16 (the value OpenCV's
// vertical step starts from; it fits: 255 * 2048 >> 4 = 32640).
template <int CN>
struct HPass {
    const Axis& ax;
    std::vector<int> off;   // byte offset of each output pixel's first tap in the row
    std::vector<int> wpair; // (w1 << 16) | w0, for _mm_madd_epi16
    int n, two_tap, simd;   // pixels; [0, two_tap) read their second tap inside the image row (from two_tap on
                            // it would lie past the row's end, and its weight is 0); [0, simd) may load 8 bytes
    HPass(const Axis& a, int x0, int img_w) : ax(a), off(a.src.size()), wpair(a.src.size()) {
        n = (int)a.src.size();
        two_tap = n;
        for (int i = 0; i < n; i++) {
            off[i] = (x0 + a.src[i]) * CN;
            wpair[i] = (int)(((unsigned)a.w1[i] << 16) | ((unsigned)a.w0[i] & 0xffffu));
            if (two_tap == n && x0 + a.src[i] + 1 >= img_w) two_tap = i;  // (then src = sw - 1: w1 is 0)
        }
        simd = 0;
        while (simd < two_tap && (rg_i64)off[simd] + 8 <= (rg_i64)img_w * CN) simd++;
    }
    void run(const rg_u8* row, rg_i16* planes, int plane_len) const {
        int i = 0;
#ifdef RG_SSE2
        if (CN == 3) {
            // four pixels at a time: each 8-byte load holds a pixel's two taps, (p0 p3) (p1 p4) (p2 p5)
            // pairs meet their weights in one pmaddwd, and a 4x4 transpose turns pixels into planes
            rg_i16 *q0 = planes, *q1 = planes + plane_len, *q2 = planes + 2 * plane_len;
            for (; i + 4 <= simd; i += 4) {
                __m128i m[4];
                for (int u = 0; u < 4; u++) {
                    __m128i w = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i*)(row + off[i + u])), zero());
                    __m128i pairs = _mm_unpacklo_epi16(w, _mm_srli_si128(w, 6));
                    m[u] = _mm_madd_epi16(pairs, _mm_set1_epi32(wpair[i + u]));
                }
                __m128i t0 = _mm_unpacklo_epi32(m[0], m[1]), t1 = _mm_unpacklo_epi32(m[2], m[3]);
                __m128i t2 = _mm_unpackhi_epi32(m[0], m[1]), t3 = _mm_unpackhi_epi32(m[2], m[3]);
                __m128i c01 = _mm_packs_epi32(_mm_srai_epi32(_mm_unpacklo_epi64(t0, t1), 4),
                                              _mm_srai_epi32(_mm_unpackhi_epi64(t0, t1), 4));
                __m128i c2 = _mm_srai_epi32(_mm_unpacklo_epi64(t2, t3), 4);
                _mm_storel_epi64((__m128i*)(q0 + i), c01);
                _mm_storel_epi64((__m128i*)(q1 + i), _mm_srli_si128(c01, 8));
                _mm_storel_epi64((__m128i*)(q2 + i), _mm_packs_epi32(c2, c2));
            }
        } else {
            // one channel: each pixel's two taps are adjacent bytes; four pixels' (p0 p1) pairs in one pmaddwd
            for (; i + 4 <= two_tap; i += 4) {
                int t[4];
                for (int u = 0; u < 4; u++) {
                    const rg_u8* p = row + off[i + u];
                    t[u] = p[0] | (p[1] << 16);
                }
                __m128i s = _mm_madd_epi16(_mm_setr_epi32(t[0], t[1], t[2], t[3]),
                                           _mm_loadu_si128((const __m128i*)(wpair.data() + i)));
                s = _mm_srai_epi32(s, 4);
                _mm_storel_epi64((__m128i*)(planes + i), _mm_packs_epi32(s, s));
            }
        }
#endif
        for (; i < two_tap; i++) {
            const rg_u8* p = row + off[i];
            for (int k = 0; k < CN; k++)
                planes[k * plane_len + i] = (rg_i16)((p[k] * ax.w0[i] + p[k + CN] * ax.w1[i]) >> 4);
        }
        for (; i < n; i++) {
            const rg_u8* p = row + off[i];
            for (int k = 0; k < CN; k++) planes[k * plane_len + i] = (rg_i16)((p[k] * RG_COEF_SCALE) >> 4);
        }
    }
};

inline float normalize(int v, float mean, float mult, float bias) {
    float f = (float)v - mean;
    f = f * mult;
    return f + bias;
}

#ifdef RG_SSE2
struct Norm4 {  // normalize() on four lanes
    __m128 mean, mult, bias;
    Norm4(float m, float f, float b) : mean(_mm_set1_ps(m)), mult(_mm_set1_ps(f)), bias(_mm_set1_ps(b)) {}
    __m128 operator()(__m128i v) const {
        return _mm_add_ps(_mm_mul_ps(_mm_sub_ps(_mm_cvtepi32_ps(v), mean), mult), bias);
    }
};

// Values x..x+7 of a row of n (int32 in lo, hi) normalised into out[x..x+7], or mirrored into out[n-8-x..n-1-x].
inline void put8(float* out, int n, int x, __m128i lo, __m128i hi, const Norm4& norm, bool mirror) {
    __m128 a = norm(lo), b = norm(hi);
    if (mirror) {
        _mm_storeu_ps(out + n - x - 4, _mm_shuffle_ps(a, a, _MM_SHUFFLE(0, 1, 2, 3)));
        _mm_storeu_ps(out + n - x - 8, _mm_shuffle_ps(b, b, _MM_SHUFFLE(0, 1, 2, 3)));
    } else {
        _mm_storeu_ps(out + x, a);
        _mm_storeu_ps(out + x + 4, b);
    }
}
#endif

// The vertical step of one output row for one channel, normalised into out (mirrored: written right to left).
void vpass(const rg_i16* a, const rg_i16* b, int b0, int b1, int n, float mean, float mult, float bias,
           float* out, bool mirror) {
    int x = 0;
#ifdef RG_SSE2
    const __m128i vb0 = _mm_set1_epi16((short)b0), vb1 = _mm_set1_epi16((short)b1), two = _mm_set1_epi16(2);
    const Norm4 norm(mean, mult, bias);
    for (; x + 8 <= n; x += 8) {
        __m128i s = _mm_add_epi16(_mm_mulhi_epi16(_mm_loadu_si128((const __m128i*)(a + x)), vb0),
                                  _mm_mulhi_epi16(_mm_loadu_si128((const __m128i*)(b + x)), vb1));
        s = _mm_srai_epi16(_mm_add_epi16(s, two), 2);  // 0..255
        put8(out, n, x, _mm_unpacklo_epi16(s, zero()), _mm_unpackhi_epi16(s, zero()), norm, mirror);
    }
#endif
    for (; x < n; x++) {
        int v = (((b0 * a[x]) >> 16) + ((b1 * b[x]) >> 16) + 2) >> 2;
        out[mirror ? n - 1 - x : x] = normalize(v, mean, mult, bias);
    }
}

template <int CN>
void run(const rg_u8* img, rg_i64 row_stride, int img_w, int x0, int y0, int sw, int sh, int rw, int rh,
         int wx, int wy, int ow, int oh, const int* swap, const float* mean, const float* mult, const float* bias,
         float* out, rg_i64 plane_stride, int mirror) {
    Axis ax(wx, ow, sw, rw, true), ay(wy, oh, sh, rh, false);
    HPass<CN> hp(ax, x0, img_w);
    // two cached horizontal rows (each CN planes of ow int16): consecutive output rows share source rows
    std::vector<rg_i16> buf(2 * CN * (size_t)ow);
    rg_i16* rows[2] = {buf.data(), buf.data() + CN * (size_t)ow};
    int have[2] = {-1, -1};
    auto get = [&](int s, int keep) -> const rg_i16* {
        for (int r = 0; r < 2; r++)
            if (have[r] == s) return rows[r];
        int r = have[0] == keep ? 1 : 0;
        hp.run(img + (rg_i64)(y0 + s) * row_stride, rows[r], ow);
        have[r] = s;
        return rows[r];
    };
    for (int j = 0; j < oh; j++) {
        int s = ay.src[j];
        int s0 = rg_clampi(s, 0, sh - 1), s1 = rg_clampi(s + 1, 0, sh - 1);
        const rg_i16* r0 = get(s0, -1);
        const rg_i16* r1 = get(s1, s0);
        for (int k = 0; k < CN; k++) {
            int c = swap[k];
            vpass(r0 + c * ow, r1 + c * ow, ay.w0[j], ay.w1[j], ow, mean[k], mult[k], bias[k],
                  out + k * plane_stride + (rg_i64)j * ow, mirror != 0);
        }
    }
}

// A crop of a 16-bit image (no resampling) normalised into planes: (v - mean) * mult + bias per value.
template <typename T>
void crop_normalize(const T* img, rg_i64 row_stride, int cn, int x0, int y0, int ow, int oh, const int* swap,
                    const float* mean, const float* mult, const float* bias, float* out, rg_i64 plane_stride,
                    bool mirror) {
    for (int k = 0; k < cn; k++) {
        const float m = mean[k], f = mult[k], b = bias[k];
        for (int j = 0; j < oh; j++) {
            const T* src = img + (y0 + j) * row_stride + (rg_i64)x0 * cn + swap[k];
            float* dst = out + k * plane_stride + (rg_i64)j * ow;
            int x = 0;
#ifdef RG_SSE2
            if (cn == 1) {
                const Norm4 norm(m, f, b);
                for (; x + 8 <= ow; x += 8) {
                    __m128i v = _mm_loadu_si128((const __m128i*)(src + x));
                    __m128i lo, hi;
                    if (sizeof(T) == 2 && (T)-1 > 0) {  // unsigned: zero-extend
                        lo = _mm_unpacklo_epi16(v, zero());
                        hi = _mm_unpackhi_epi16(v, zero());
                    } else {  // signed: sign-extend
                        lo = _mm_srai_epi32(_mm_unpacklo_epi16(v, v), 16);
                        hi = _mm_srai_epi32(_mm_unpackhi_epi16(v, v), 16);
                    }
                    put8(dst, ow, x, lo, hi, norm, mirror);
                }
            }
#endif
            for (; x < ow; x++) dst[mirror ? ow - 1 - x : x] = normalize((int)src[(rg_i64)x * cn], m, f, b);
        }
    }
}

}  // namespace

extern "C" {

// img: (img_h, img_w, cn) uint8 rows row_stride bytes apart. The source region (x0, y0, sw, sh) is resized to
// rw x rh and the window (wx, wy, ow, oh) of the result is normalised into out: cn planes plane_stride floats
// apart, each ow x oh contiguous; output plane k reads channel swap[k]. Returns 0, or -1 for an unsupported
// channel count.
int rg_cpu_resize_normalize_u8(const rg_u8* img, rg_i64 row_stride, int img_w, int cn, int x0, int y0, int sw,
                               int sh, int rw, int rh, int wx, int wy, int ow, int oh, const int* swap,
                               const float* mean, const float* mult, const float* bias, float* out,
                               rg_i64 plane_stride, int mirror) {
    if (cn == 3)
        run<3>(img, row_stride, img_w, x0, y0, sw, sh, rw, rh, wx, wy, ow, oh, swap, mean, mult, bias, out,
               plane_stride, mirror);
    else if (cn == 1)
        run<1>(img, row_stride, img_w, x0, y0, sw, sh, rw, rh, wx, wy, ow, oh, swap, mean, mult, bias, out,
               plane_stride, mirror);
    else
        return -1;
    return 0;
}

// img: (h, w, cn) uint16 (is_signed 0) or int16 (1), rows row_stride elements apart. The window (x0, y0, ow, oh)
// is normalised into out as above. Returns 0.
int rg_cpu_crop_normalize_16(const void* img, rg_i64 row_stride, int cn, int is_signed, int x0, int y0, int ow,
                             int oh, const int* swap, const float* mean, const float* mult, const float* bias,
                             float* out, rg_i64 plane_stride, int mirror) {
    if (is_signed)
        crop_normalize((const rg_i16*)img, row_stride, cn, x0, y0, ow, oh, swap, mean, mult, bias, out,
                       plane_stride, mirror != 0);
    else
        crop_normalize((const rg_u16*)img, row_stride, cn, x0, y0, ow, oh, swap, mean, mult, bias, out,
                       plane_stride, mirror != 0);
    return 0;
}

}  // extern "C"
