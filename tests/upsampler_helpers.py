"""Small constructor arguments that make every registered upsampler work on a tiny ViT with
32 channels and 4x4 to 8x8 feature grids (shared by the framework tests)."""

TINY_UPSAMPLER_KWARGS = {
    "anyup": {"qk_dim": 16},
    "featup_jbu": {"dim": 32},
    "jafar": {"v_dim": 32, "qk_dim": 16},
    "loftup": {"dim": 32, "num_heads": 2},
    "naf": {"kernel_size": 3},
    "upsample_anything": {"steps": 2},
}
