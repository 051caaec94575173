# Exercise stub, generated from mae/models/transformer.py by scripts/make_exercises.py.
# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.
"""Step 05: the pre-norm transformer block, and the weight initialisation MAE uses.

x = x + Attention(LayerNorm(x));  x = x + Mlp(LayerNorm(x)).
Normalising *before* each sub-layer (pre-norm) keeps the residual stream an identity
path, which is what lets deep ViTs train without warm-up tricks.
"""

from torch import nn

from .attention import Attention


class DropPath(nn.Module):
    """Stochastic depth: while training, skip the residual branch for a random subset of samples."""

    def __init__(self, drop_prob=0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if not self.training or self.drop_prob == 0:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(keep)  # one draw per sample
        return x * mask / keep  # rescaled so the expected output is unchanged


class Mlp(nn.Module):
    """Linear -> GELU -> Linear, applied to every token independently."""

    def __init__(self, in_features, hidden_features=None, act_layer=nn.GELU, drop=0.0):
        super().__init__()
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    def __init__(
        self,
        dim,
        num_heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        drop=0.0,
        attn_drop=0.0,
        drop_path=0.0,
        layer_norm_eps=1e-6,
    ):
        super().__init__()
        # EXERCISE: norm1 = LayerNorm(dim, eps=layer_norm_eps), attn = Attention(...), norm2, mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop); keep these names, they are the checkpoint's keys
        # BÀI TẬP: norm1 = LayerNorm(dim, eps=layer_norm_eps), attn = Attention(...), norm2, mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop); giữ đúng các tên này, chúng là các khoá (key) trong checkpoint
        raise NotImplementedError("norm1 = LayerNorm(dim, eps=layer_norm_eps), attn = Attention(...), norm2, mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop); keep these names, they are the checkpoint's keys")
        # END EXERCISE
        # Stochastic depth, used when fine-tuning; an identity when drop_path = 0.
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        # EXERCISE: pre-norm residuals: x + drop_path(attn(norm1(x))), then x + drop_path(mlp(norm2(x)))
        # BÀI TẬP: phần dư chuẩn hoá trước (pre-norm): x + drop_path(attn(norm1(x))), rồi x + drop_path(mlp(norm2(x)))
        raise NotImplementedError('pre-norm residuals: x + drop_path(attn(norm1(x))), then x + drop_path(mlp(norm2(x)))')
        # END EXERCISE


def init_weights(module):
    """MAE's scheme for linear and norm layers: Xavier-uniform weights, zero biases, unit LayerNorm scales."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
