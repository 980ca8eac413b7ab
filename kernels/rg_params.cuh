// recordgpu kernels: the per-sample parameter structs. recordgpu/kernels/params.py packs plans into
// numpy structured arrays with exactly this layout (checked at build time by the NVRTC check and at load
// time by the host library), shared by the GPU launch and the host build.
#ifndef RG_PARAMS_CUH
#define RG_PARAMS_CUH

#include "rg_common.cuh"

#define RG_MAX_C 4          // channels per pixel
#define RG_MAX_COLOUR 8     // colour stages per step
#define RG_MAX_CONTRAST 4   // statistics slots per step: Contrast gray means and FloatIntensity statistics

// RgGeom.kind: how the step's geometric output is made from its source window
#define RG_GEOM_COPY 0      // the window itself (a crop)
#define RG_GEOM_PAD 1       // copyMakeBorder, constant fill
#define RG_GEOM_RESIZE 2    // cv::resize of the window
#define RG_GEOM_WARP 3      // cv::warpAffine (OpenCV's 1/32-pixel fixed-point remap)

// RgGeom.mode for RG_GEOM_RESIZE: which of cv::resize's algorithms applies (decided in params.py)
#define RG_RZ_COPY 0        // same size: plain copy
#define RG_RZ_NEAREST 1
#define RG_RZ_LINEAR 2
#define RG_RZ_LINEAR_AREA 3 // INTER_AREA when enlarging: bilinear with area coefficients
#define RG_RZ_CUBIC 4
#define RG_RZ_LANCZOS4 5
#define RG_RZ_AREA 6        // INTER_AREA shrinking, fractional scale
#define RG_RZ_AREA_FAST 7   // INTER_AREA shrinking by integer factors (and INTER_LINEAR by exactly 2)
// RgGeom.mode for RG_GEOM_WARP: OpenCV interpolation code (0 nearest, 1 linear, 2 cubic, 4 Lanczos-4)

// RgColour.kind
#define RG_COL_BRIGHTNESS 1  // a
#define RG_COL_CONTRAST 2    // a; beta from the gray mean of slot `slot`
#define RG_COL_SATURATION 3  // a
#define RG_COL_HSL 4         // ival = dh, b = ds, v[0] = dl (source units)
#define RG_COL_PCA 5         // v[0..2] = add per BGR channel
#define RG_COL_INTENSITY 6   // a = scale, b = offset
#define RG_COL_FLOAT_INTENSITY 7  // FloatIntensity (last colour entry of a normalising step): ival = mode,
                                  // flags = RG_FINT_CLIP, a = A, b = D (filled by the statistics pass for
                                  // zscore/percentile, whose slot is `slot`), v = {E, F, clip lo},
                                  // w = {clip hi, slope, intercept, q_lo, q_hi}

// RgColour.ival for RG_COL_FLOAT_INTENSITY
#define RG_FINT_RANGE 0
#define RG_FINT_ZSCORE 1
#define RG_FINT_PERCENTILE 2
#define RG_FINT_CLIP 1            // RgColour.flags bit

// RgStep.out_kind
#define RG_OUT_NONE 0        // this sample has no step at this position
#define RG_OUT_IMAGE 1       // write (h, w, c) in the source dtype (an intermediate image)
#define RG_OUT_NORMALIZE 2   // write (c, h, w) in norm.out_dtype (the batch output)

// RgNorm.out_dtype
#define RG_DT_FLOAT32 0
#define RG_DT_FLOAT16 1
#define RG_DT_UINT8 2
#define RG_DT_INT8 3
#define RG_DT_UINT16 4
#define RG_DT_INT16 5

struct RgGeom {
    double m[6];                // warp: inverse affine matrix (output -> source), as OpenCV inverts it
    double scale_x, scale_y;    // resize: OpenCV's scale (1 / inv_scale)
    double inv_scale_x, inv_scale_y;  // resize: output / window size
    rg_u64 src;                 // address of window pixel (0, 0)
    int src_stride;             // elements per source row
    int win_w, win_h;           // the window (the image this op sees)
    int kind, mode;             // RG_GEOM_*, RG_RZ_* or warp interpolation
    int full_w, full_h;         // size of the op's whole output
    int crop_x, crop_y;         // origin of the computed region inside the whole output
    int out_w, out_h;           // size of the computed region
    int pad;                    // RG_GEOM_PAD: pixels on every side
    int iscale_x, iscale_y;     // RG_RZ_AREA_FAST: integer factors
    float fill[4];              // border value per channel (source units, saturated per dtype)
    int reserved_;
};

struct RgColour {
    int kind;
    int ival;
    int slot;                   // RG_COL_CONTRAST / statistics of RG_COL_FLOAT_INTENSITY: the statistics slot
    int flags;
    float a, b;
    float v[3];
    float w[5];
};

struct RgNorm {
    rg_u64 dst;                 // address of the sample's (c, h, w) output
    rg_u64 mean_img;            // address of a float32 (c, h, w) mean image, 0 for none
    int out_dtype;
    int mirror;
    int swap[4];                // output channel k reads source channel swap[k]
    float mean[4], mult[4], bias[4];
    int imean[4];               // round_half_away(mean) for int8/int16 outputs
};

struct RgStep {  // one step of one sample: geometry -> colour chain -> output
    RgGeom geom;
    RgNorm norm;
    double means[RG_MAX_CONTRAST];  // gray means of the Contrast stages (written by the statistics pass)
    rg_u64 dst;                 // RG_OUT_IMAGE: address of the (out_h, out_w, c) output
    int out_kind;
    int c;                      // channels
    int n_colour;
    int reserved_;
    RgColour colour[RG_MAX_COLOUR];
};

#endif  // RG_PARAMS_CUH
