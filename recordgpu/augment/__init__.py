"""MXNet's default image augmenter as data: parameters, per-sample plans, and the host executor.

``AugmentParams`` (what the user asked for) -> ``Planner.plan_sample`` (MXNet's random draws, given only
the image shape) -> ``SamplePlan`` (stages with every parameter resolved) -> ``cpu.execute`` (OpenCV/numpy,
bit-exact with MXNet at 8 bits, full depth at 16 bits). A GPU executor runs the same plans.
"""
from .params import AugmentParams
from .plan import (HSL, Brightness, Contrast, Crop, CropResize, FloatIntensity, Intensity, MeanImage, Normalize,
                   Pad, PCANoise, Resize, Saturation, SamplePlan, Stage, Warp, check_float_intensity,
                   check_output_dtype, geometric_stages)
from .planner import Planner
from .cpu import execute, execute_batch

__all__ = [
    "AugmentParams", "Planner", "SamplePlan", "Stage", "Resize", "Warp", "Pad", "Crop", "CropResize",
    "Brightness", "Contrast", "Saturation", "HSL", "PCANoise", "Intensity", "FloatIntensity", "Normalize",
    "MeanImage", "geometric_stages", "check_output_dtype", "check_float_intensity", "execute", "execute_batch",
]
