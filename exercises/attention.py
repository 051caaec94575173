# Exercise stub, generated from solutions/attention.py by scripts/make_exercises.py.
# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.
"""Step 04: multi-head self-attention.

softmax(Q K^T / sqrt(d_head)) V, computed for all heads at once. The production path
calls torch's fused `scaled_dot_product_attention` (same function, less memory); set
`fused_attn = False` for the explicit softmax, which is also what `attention_weights`
returns for plotting attention maps.
"""

import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=True, attn_drop=0.0, proj_drop=0.0, fused_attn=True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"dim ({dim}) must be divisible by num_heads ({num_heads}) so that each head "
                f"gets dim / num_heads channels"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split_heads(self, x):
        """(B, N, C) -> q, k, v, each (B, heads, N, head_dim)."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def attention_weights(self, x):
        """(B, N, C) -> (B, heads, N, N) attention probabilities (explicit path, no dropout)."""
        q, k, _ = self._split_heads(x)
        return ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)

    def forward(self, x):
        B, N, C = x.shape
        # EXERCISE: qkv = self.qkv(x) -> (B, N, 3, heads, head_dim) -> q, k, v each (B, heads, N, head_dim); weights = softmax(q k^T * self.scale) over keys, then self.attn_drop; out = weights @ v -> (B, N, C); finish with self.proj and self.proj_drop
        raise NotImplementedError('qkv = self.qkv(x) -> (B, N, 3, heads, head_dim) -> q, k, v each (B, heads, N, head_dim); weights = softmax(q k^T * self.scale) over keys, then self.attn_drop; out = weights @ v -> (B, N, C); finish with self.proj and self.proj_drop')
        # END EXERCISE
