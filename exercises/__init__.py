# Exercise stub, generated from solutions/__init__.py by scripts/make_exercises.py.
# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.
"""Reference implementation of every course step; `exercises/` is generated from it.

The `mae` package takes its model components from here unless MAE_IMPL=exercises.
"""

from .attention import Attention
from .classifier import VisionTransformer
from .decoder import EncoderDecoder
from .encoder import Encoder
from .masking import random_masking
from .model import MAE
from .patch_embed import PatchEmbed
from .pos_embed import get_1d_sincos_pos_embed, get_2d_sincos_pos_embed
from .transformer import Block, Mlp

__all__ = [
    "Attention", "Block", "Encoder", "EncoderDecoder", "MAE", "Mlp", "PatchEmbed",
    "VisionTransformer", "get_1d_sincos_pos_embed", "get_2d_sincos_pos_embed", "random_masking",
]  # fmt: skip
