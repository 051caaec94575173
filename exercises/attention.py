# Exercise stub, generated from mae/models/attention.py by scripts/make_exercises.py.
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
        # EXERCISE: self.qkv(x) is (B, N, 3 * C), laid out (3, heads, head_dim): reshape to (B, N, 3, heads, head_dim), permute to (3, B, heads, N, head_dim), unbind the first axis into q, k, v
        # BÀI TẬP: self.qkv(x) có kích thước (B, N, 3 * C), xếp theo (3, heads, head_dim): reshape thành (B, N, 3, heads, head_dim), permute thành (3, B, heads, N, head_dim), rồi unbind trục đầu tiên thành q, k, v
        raise NotImplementedError('self.qkv(x) is (B, N, 3 * C), laid out (3, heads, head_dim): reshape to (B, N, 3, heads, head_dim), permute to (3, B, heads, N, head_dim), unbind the first axis into q, k, v')
        # END EXERCISE

    def attention_weights(self, x):
        """(B, N, C) -> (B, heads, N, N) attention probabilities (explicit path, no dropout)."""
        # EXERCISE: q, k from self._split_heads(x); scores = (q * self.scale) @ k^T, (B, heads, N, N); softmax over the keys (the last axis)
        # BÀI TẬP: lấy q, k từ self._split_heads(x); scores = (q * self.scale) @ k^T, kích thước (B, heads, N, N); softmax theo các key (trục cuối cùng)
        raise NotImplementedError('q, k from self._split_heads(x); scores = (q * self.scale) @ k^T, (B, heads, N, N); softmax over the keys (the last axis)')
        # END EXERCISE

    def forward(self, x):
        B, N, C = x.shape
        # EXERCISE: q, k, v = self._split_heads(x); fused path: F.scaled_dot_product_attention (it scales by itself); explicit path (fused_attn False): self.attn_drop(weights) @ v with the weights of attention_weights; then heads side by side (B, N, C), self.proj, self.proj_drop
        # BÀI TẬP: q, k, v = self._split_heads(x); nhánh hợp nhất: F.scaled_dot_product_attention (hàm này tự nhân hệ số tỉ lệ); nhánh tường minh (fused_attn False): self.attn_drop(weights) @ v với các trọng số từ attention_weights; sau đó ghép các đầu cạnh nhau thành (B, N, C), rồi self.proj, self.proj_drop
        raise NotImplementedError('q, k, v = self._split_heads(x); fused path: F.scaled_dot_product_attention (it scales by itself); explicit path (fused_attn False): self.attn_drop(weights) @ v with the weights of attention_weights; then heads side by side (B, N, C), self.proj, self.proj_drop')
        # END EXERCISE
