"""GPU-side pieces of recordgpu: image decoding with nvImageCodec (default) or DALI, with exact CPU fallbacks.

Nothing heavy is imported here; ``recordgpu.gpu.decode`` imports on machines without nvImageCodec, DALI or
CuPy and only loads them when a GPU decoder is constructed.
"""
