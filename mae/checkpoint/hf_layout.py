"""The Hugging Face layout of an MAE: transformers' parameter names and ViTMAEConfig fields, to and from ours.

Plain dicts of tensors and of numbers: nothing here imports transformers (mae.hf_interop builds its objects).

The two models hold the same tensors under other names. Ours keeps the official MAE names; transformers 5.x
names them like this (N: a block; the decoder's blocks are `decoder.decoder_layers.N.` with the same suffixes):

    cls_token, pos_embed           vit.embeddings.cls_token, vit.embeddings.position_embeddings
    patch_embed.proj.*             vit.embeddings.patch_embeddings.projection.*
    blocks.N.norm1.*, norm2.*      vit.layers.N.layernorm_before.*, layernorm_after.*
    blocks.N.attn.qkv.*            vit.layers.N.attention.q_proj.*, k_proj.*, v_proj.*  (one Linear, three there)
    blocks.N.attn.proj.*           vit.layers.N.attention.o_proj.*
    blocks.N.mlp.fc1.*, fc2.*      vit.layers.N.mlp.fc1.*, fc2.*
    norm.*                         vit.layernorm.*
    mask_token, decoder_pos_embed  decoder.mask_token, decoder.decoder_pos_embed
    decoder_embed/norm/pred.*      decoder.decoder_embed/decoder_norm/decoder_pred.*

Files use older names: transformers 4.x (and the published facebook/vit-mae-* files) have
`vit.encoder.layer.N.attention.attention.{query,key,value}`, `attention.output.dense`, `intermediate.dense` and
`output.dense`; 5.x's save_pretrained writes those names back, with the decoder's list as
`decoder.decoder_encoder.layer.N`. All of them are renamed on loading; a ViTMAEModel (the encoder alone) saves
its keys without the `vit.` prefix, and loads too. save_pretrained here writes the 4.x names, which 4.x and
5.x both load.
"""

import json
import re
import warnings
from pathlib import Path

import torch

from .errors import CheckpointError

# Outside the blocks: (our name or prefix, transformers' name or prefix).
TOP_LEVEL_NAMES = (
    ("cls_token", "vit.embeddings.cls_token"),
    ("pos_embed", "vit.embeddings.position_embeddings"),
    ("patch_embed.proj.", "vit.embeddings.patch_embeddings.projection."),
    ("norm.", "vit.layernorm."),
    ("mask_token", "decoder.mask_token"),
    ("decoder_pos_embed", "decoder.decoder_pos_embed"),
    ("decoder_embed.", "decoder.decoder_embed."),
    ("decoder_norm.", "decoder.decoder_norm."),
    ("decoder_pred.", "decoder.decoder_pred."),
)


# The two stacks of blocks: (our list, transformers' list).
BLOCK_LISTS = (("blocks", "vit.layers"), ("decoder_blocks", "decoder.decoder_layers"))


# Inside a block, everything but the fused qkv.
IN_BLOCK_NAMES = (
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.o_proj."),
    ("mlp.fc1.", "mlp.fc1."),
    ("mlp.fc2.", "mlp.fc2."),
)


QKV_PARTS = ("attention.q_proj", "attention.k_proj", "attention.v_proj")  # rows 0:C, C:2C, 2C:3C of our qkv


# transformers 4.x -> 5.x inside a layer; attention.output.dense must be renamed before output.dense.
LEGACY_IN_LAYER_NAMES = (
    ("attention.attention.query.", "attention.q_proj."),
    ("attention.attention.key.", "attention.k_proj."),
    ("attention.attention.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
)


# The lists of layers in files: 4.x (and the published facebook/vit-mae-* files) call the encoder's
# `vit.encoder.layer`; transformers 5.x's save_pretrained writes 4.x names back, and the decoder's list then
# comes out as `decoder.decoder_encoder.layer`.
LEGACY_LAYER_LISTS = (
    ("vit.encoder.layer.", "vit.layers."),
    ("decoder.decoder_encoder.layer.", "decoder.decoder_layers."),
)


# A ViTMAEModel saved alone has no `vit.` prefix.
ENCODER_ALONE_PREFIXES = ("embeddings.", "layers.", "encoder.layer.", "layernorm.")


HF_BLOCK_KEY = re.compile(r"^(vit\.layers|decoder\.decoder_layers)\.(\d+)\.(.+)$")
OUR_BLOCK_KEY = re.compile(r"^(blocks|decoder_blocks)\.(\d+)\.(.+)$")


def _rename_prefix(key, pairs, reverse=False):
    """`key` with the first matching prefix of `pairs` replaced ((from, to), or (to, from) with reverse=True);
    a prefix ending in '.' matches a start of the key, one without matches the whole key. No match: `key`."""
    for ours, theirs in pairs:
        old, new = (theirs, ours) if reverse else (ours, theirs)
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old) :]
    return key


def to_transformers_state(state):
    """Our (official-layout) MAE state dict -> ViTMAEForPreTraining's, with transformers 5.x names."""
    hf_lists = dict(BLOCK_LISTS)
    hf_state = {}
    for key, value in state.items():
        block = OUR_BLOCK_KEY.match(key)
        if block is None:
            hf_state[_rename_prefix(key, TOP_LEVEL_NAMES)] = value  # unknown keys travel as they are
            continue
        stack, index, rest = block.groups()
        prefix = f"{hf_lists[stack]}.{index}."
        if rest.startswith("attn.qkv."):
            # (3C, C) rows laid out (3, heads, head_dim): q, k, v are three equal slices. Cloned, because
            # safetensors refuses tensors that share memory and a view would tie the two models' weights.
            parameter = rest.removeprefix("attn.qkv.")  # weight or bias
            for part, chunk in zip(QKV_PARTS, value.chunk(3, dim=0)):
                hf_state[f"{prefix}{part}.{parameter}"] = chunk.clone()
            continue
        hf_state[prefix + _rename_prefix(rest, IN_BLOCK_NAMES)] = value
    return hf_state


def modernize_transformers_keys(hf_state):
    """A ViTMAE state dict in any layout we know (5.x, 4.x, ViTMAEModel alone) -> the 5.x names with `vit.`."""
    modern = {}
    for key, value in hf_state.items():
        if key.startswith(ENCODER_ALONE_PREFIXES):
            key = "vit." + key
        key = _rename_prefix(key, LEGACY_LAYER_LISTS)
        block = HF_BLOCK_KEY.match(key)
        if block is not None:  # rename inside layers only: `decoder.decoder_pred` must stay as it is
            stack, index, rest = block.groups()
            key = f"{stack}.{index}.{_rename_prefix(rest, LEGACY_IN_LAYER_NAMES)}"
        modern[key] = value
    return modern


def to_legacy_transformers_state(hf_state):
    """transformers 5.x names -> the 4.x names of the published facebook/vit-mae-* files, which every
    transformers version loads (5.x renames them on loading)."""
    legacy = {}
    for key, value in hf_state.items():
        block = HF_BLOCK_KEY.match(key)
        if block is not None:
            stack, index, rest = block.groups()
            rest = _rename_prefix(rest, LEGACY_IN_LAYER_NAMES, reverse=True)
            stack = (
                "vit.encoder.layer" if stack == "vit.layers" else stack
            )  # the decoder's list kept its name
            key = f"{stack}.{index}.{rest}"
        legacy[key] = value
    return legacy


def from_transformers_state(hf_state, source="the transformers weights"):
    """A ViTMAE state dict (transformers 5.x or 4.x names) -> our MAE's (official names), q, k, v fused to qkv."""
    our_lists = {theirs: ours for ours, theirs in BLOCK_LISTS}
    state, qkv_parts = {}, {}  # qkv_parts: (our qkv key) -> {part: tensor}
    for key, value in modernize_transformers_keys(hf_state).items():
        block = HF_BLOCK_KEY.match(key)
        if block is None:
            state[_rename_prefix(key, TOP_LEVEL_NAMES, reverse=True)] = value
            continue
        stack, index, rest = block.groups()
        prefix = f"{our_lists[stack]}.{index}."
        part, _, parameter = rest.rpartition(".")
        if part in QKV_PARTS:
            qkv_parts.setdefault(f"{prefix}attn.qkv.{parameter}", {})[part] = value
            continue
        state[prefix + _rename_prefix(rest, IN_BLOCK_NAMES, reverse=True)] = value
    for key, parts in qkv_parts.items():
        missing = [p.split(".")[-1] for p in QKV_PARTS if p not in parts]
        if missing:
            raise CheckpointError(
                f"{source}: the attention of {key.rsplit('.', 2)[0]} has no {', '.join(missing)} "
                f"(found {', '.join(p.split('.')[-1] for p in parts)}): the file is incomplete"
            )
        state[key] = torch.cat([parts[p] for p in QKV_PARTS], dim=0)  # (3C, ...), q then k then v
    return in_model_order(state)


# Our (and the official) state dict's order, so that a converted dict reads like model.state_dict(): the
# parameters set directly on the model first, then its modules as __init__ creates them.
TOP_LEVEL_ORDER = ("cls_token", "pos_embed", "mask_token", "decoder_pos_embed", "patch_embed.", "blocks.", "norm.",
                   "decoder_embed.", "decoder_blocks.", "decoder_norm.", "decoder_pred.")  # fmt: skip


IN_BLOCK_ORDER = ("norm1.", "attn.qkv.", "attn.proj.", "norm2.", "mlp.fc1.", "mlp.fc2.")


def _position(key, order):
    """Index of the first entry of `order` that names `key` (exactly, or as a prefix ending in '.')."""
    for index, name in enumerate(order):
        if key == name or (name.endswith(".") and key.startswith(name)):
            return index
    return len(order)  # unknown names go last, in the order they came


def in_model_order(state):
    """`state` in our model's order: embeddings, blocks 0, 1, ... (each norm1, qkv, proj, norm2, mlp), norm, decoder."""

    def rank(key):
        block = OUR_BLOCK_KEY.match(key)
        inside = (int(block.group(2)), _position(block.group(3), IN_BLOCK_ORDER)) if block else (0, 0)
        return (_position(key, TOP_LEVEL_ORDER), *inside, not key.endswith("weight"))  # weight before bias

    return dict(sorted(state.items(), key=lambda item: rank(item[0])))


def is_transformers_layout(keys):
    """Whether a state dict's keys are a transformers ViTMAE's (any version) rather than the official MAE's."""
    return any(
        k.startswith(("vit.", "decoder.decoder_", "decoder.mask_token", *ENCODER_ALONE_PREFIXES))
        for k in keys
    )


# ViTMAEConfig's defaults: what a config.json that leaves a field out means.
TRANSFORMERS_DEFAULTS = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12, image_size=224,
    patch_size=16, num_channels=3, qkv_bias=True, decoder_num_attention_heads=16, decoder_hidden_size=512,
    decoder_num_hidden_layers=8, decoder_intermediate_size=2048, mask_ratio=0.75, norm_pix_loss=False,
)  # fmt: skip


def to_transformers_config(config, mask_ratio=0.75):
    """Our MAE constructor arguments (model.config) -> ViTMAEConfig's keyword arguments."""
    height, width = (config["img_size"],) * 2 if isinstance(config["img_size"], int) else config["img_size"]
    if height != width:
        # transformers' ViTMAEForPreTraining computes its loss on square images only (its patchify refuses others).
        raise ValueError(
            f"transformers' ViTMAEForPreTraining needs square images; this model takes {height}x{width}"
        )
    if config.get("drop_path_rate", 0.0):
        warnings.warn(
            f"drop_path_rate={config['drop_path_rate']} is not carried over: transformers' ViTMAE has no "
            f"stochastic depth (the weights and the evaluation-mode function are the same)",
            stacklevel=3,
        )
    embed_dim, decoder_dim, mlp_ratio = config["embed_dim"], config["decoder_embed_dim"], config["mlp_ratio"]
    return dict(
        image_size=height,
        patch_size=config["patch_size"],
        num_channels=config["in_chans"],
        hidden_size=embed_dim,
        num_hidden_layers=config["depth"],
        num_attention_heads=config["num_heads"],
        intermediate_size=int(embed_dim * mlp_ratio),  # as our Block sizes its Mlp
        decoder_hidden_size=decoder_dim,
        decoder_num_hidden_layers=config["decoder_depth"],
        decoder_num_attention_heads=config["decoder_num_heads"],
        decoder_intermediate_size=int(decoder_dim * mlp_ratio),
        layer_norm_eps=config["layer_norm_eps"],
        hidden_act="gelu",  # exact (erf) GELU, as nn.GELU()
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        norm_pix_loss=bool(config["norm_pix_loss"]),
        mask_ratio=float(mask_ratio),
    )


SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_channels",
               "decoder_hidden_size", "decoder_num_hidden_layers", "decoder_num_attention_heads",
               "decoder_intermediate_size")  # fmt: skip


def _square(value, name, source):
    """A positive int, or a [n, n] pair of them, from a config.json field -> n; anything else is an error naming
    the file."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if type(value) is int and value > 0:
        return value
    raise CheckpointError(
        f"{source}: {name}={value!r} is not supported here (a positive square size is needed)"
    )


def from_transformers_config(hf_config, source="the transformers config"):
    """ViTMAEConfig fields (a dict, as in config.json) -> (our MAE constructor arguments, mask_ratio).

    What our MAE cannot compute (another activation, no qkv bias, other MLP ratios in the encoder and the
    decoder) is refused with the field named; dropout, which only acts while training, is dropped with a warning.
    """
    if not isinstance(hf_config, dict):
        raise CheckpointError(f"{source} holds a JSON {type(hf_config).__name__}, not an object of fields")
    model_type = hf_config.get("model_type", "vit_mae")
    if model_type != "vit_mae":
        raise CheckpointError(f"{source} describes a {model_type!r} model, not a ViTMAE ('vit_mae')")
    c = {**TRANSFORMERS_DEFAULTS, **hf_config}
    for name in SIZE_FIELDS:
        if type(c[name]) is not int or c[name] < 1:  # bool is an int; 0 would divide by zero below
            raise CheckpointError(f"{source}: {name}={c[name]!r}; a positive integer is needed")
    if type(c["layer_norm_eps"]) not in (int, float) or not 0 < c["layer_norm_eps"] < 1:
        raise CheckpointError(
            f"{source}: layer_norm_eps={c['layer_norm_eps']!r}; a number in (0, 1) is needed"
        )
    if type(c["mask_ratio"]) not in (int, float) or not 0 <= c["mask_ratio"] < 1:
        raise CheckpointError(f"{source}: mask_ratio={c['mask_ratio']!r}; a fraction in [0, 1) is needed")
    if c["hidden_act"] not in ("gelu", "gelu_python"):  # both are the exact GELU
        raise CheckpointError(
            f"{source}: hidden_act={c['hidden_act']!r}; this MAE uses the exact GELU ('gelu')"
        )
    if not c["qkv_bias"]:
        raise CheckpointError(f"{source}: qkv_bias=false; this MAE's attention always has q, k, v biases")
    mlp_ratio = c["intermediate_size"] / c["hidden_size"]
    decoder_ratio = c["decoder_intermediate_size"] / c["decoder_hidden_size"]
    if mlp_ratio != decoder_ratio or int(c["hidden_size"] * mlp_ratio) != c["intermediate_size"]:
        raise CheckpointError(
            f"{source}: intermediate_size / hidden_size = {c['intermediate_size']}/{c['hidden_size']} and "
            f"decoder_intermediate_size / decoder_hidden_size = {c['decoder_intermediate_size']}/"
            f"{c['decoder_hidden_size']} differ; this MAE has one mlp_ratio for both"
        )
    dropout = {k: c[k] for k in ("hidden_dropout_prob", "attention_probs_dropout_prob") if c[k]}
    if dropout:
        warnings.warn(f"{source}: {dropout} not carried over (this MAE has no dropout)", stacklevel=3)
    config = dict(
        img_size=_square(c["image_size"], "image_size", source),
        patch_size=_square(c["patch_size"], "patch_size", source),
        in_chans=c["num_channels"],
        embed_dim=c["hidden_size"],
        depth=c["num_hidden_layers"],
        num_heads=c["num_attention_heads"],
        mlp_ratio=mlp_ratio,
        layer_norm_eps=c["layer_norm_eps"],
        drop_path_rate=0.0,
        decoder_embed_dim=c["decoder_hidden_size"],
        decoder_depth=c["decoder_num_hidden_layers"],
        decoder_num_heads=c["decoder_num_attention_heads"],
        norm_pix_loss=bool(c["norm_pix_loss"]),
    )
    return config, float(c["mask_ratio"])


def config_from_json(config):
    """JSON has no tuples: a rectangular img_size comes back as a list and becomes the pair it was."""
    if isinstance(config.get("img_size"), list):
        config["img_size"] = tuple(config["img_size"])
    return config


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from None
