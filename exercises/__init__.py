"""Your code for the course: one module per step of notebooks 01, 02, 03, 04, 05, 06, 07, 08 and 12 (mae/models/ holds the reference)."""

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
    "Attention",
    "Block",
    "Encoder",
    "EncoderDecoder",
    "MAE",
    "Mlp",
    "PatchEmbed",
    "VisionTransformer",
    "get_1d_sincos_pos_embed",
    "get_2d_sincos_pos_embed",
    "random_masking",
]
