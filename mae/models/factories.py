"""Model factories: the official ViT-B/L/H configurations and small ones that train on a CPU.

`create_model("mae_vit_base_patch16")` builds the MAE (encoder + decoder) for pretraining;
`create_classifier("vit_base_patch16")` builds the same encoder as a classifier, for linear
probing and fine-tuning (the official `--model vit_base_patch16` of main_finetune.py).

Whose classes they build is asked here and nowhere else: `components()` gives the learner's `exercises`
package when MAE_IMPL selects it (see mae.impl), else the reference classes of this package.
"""

import inspect
from types import SimpleNamespace

from torch import nn

from .. import impl
from .classifier import VisionTransformer
from .encoder import Encoder
from .model import MAE

# The reference classes the factories build (the learner's package has the same names).
REFERENCE = SimpleNamespace(MAE=MAE, Encoder=Encoder, VisionTransformer=VisionTransformer)

# Architecture of each factory; any keyword passed to a factory overrides these.
CONFIGS = {
    # The paper's models (decoder 512 wide, 8 blocks, 16 heads).
    "mae_vit_base_patch16": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    "mae_vit_large_patch16": dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16),
    "mae_vit_huge_patch14": dict(patch_size=14, embed_dim=1280, depth=32, num_heads=16),
    # Small models for CPUs and the course.
    "mae_vit_small_patch16": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6,
                                  decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8),
    "mae_vit_tiny_patch8": dict(img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3,
                                decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4),
    # The shipped checkpoints' architecture (see checkpoints/README.md): a few MB in float16.
    "mae_vit_mini_patch8": dict(img_size=64, patch_size=8, embed_dim=128, depth=4, num_heads=4,
                                decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4),
    # The shifted digits of notebook 11: 4x4 patches of 32x32 images (64 per image), and a narrower but deeper
    # decoder (64 x 4): it trains faster per step, and its frozen encoder features were better after the same minutes.
    "mae_vit_mini_patch4": dict(img_size=32, patch_size=4, embed_dim=128, depth=4, num_heads=4,
                                decoder_embed_dim=64, decoder_depth=4, decoder_num_heads=4),
}  # fmt: skip
CLASSIFIERS = [name.removeprefix("mae_") for name in CONFIGS]  # vit_base_patch16, ...


def constructor_defaults(cls=MAE):
    """The keyword arguments a model class takes and their defaults, gathered from it and its bases.

    Each level (Encoder, EncoderDecoder, MAE) takes its own arguments and passes the rest on, so
    the defaults are written once, in the constructors; this reads them back.
    """
    defaults = {}
    for klass in reversed(cls.__mro__):
        init = vars(klass).get("__init__")
        if init is not None and klass.__module__.startswith((__package__, "exercises")):
            for name, parameter in inspect.signature(init).parameters.items():
                if parameter.default is not inspect.Parameter.empty:
                    defaults[name] = parameter.default
    return defaults


ENCODER_KEYS = tuple(constructor_defaults(Encoder))  # img_size, patch_size, ..., drop_path_rate


def components(reference: bool = False):
    """The classes to build (.MAE, .Encoder, .VisionTransformer): the learner's `exercises` package, with the
    reference standing in for the steps not written yet, when MAE_IMPL=exercises (mae.impl); else the reference."""
    learner = None if reference else impl.learner_package()
    return learner or REFERENCE


def _construct(cls, reference_cls, arguments: dict) -> nn.Module:
    """cls(**arguments), for a learner's class too that takes fewer arguments than the reference (one written from
    the official signatures has no layer_norm_eps, say).

    An argument `cls` does not take is left out when its value is the reference's default, which such code builds
    anyway; any other value is an error that names it, never a model built with something else.
    """
    parameters = _parameters(cls)
    if parameters is None:
        return cls(**arguments)
    defaults = constructor_defaults(reference_cls)
    needed = {
        k: v for k, v in arguments.items() if k not in parameters and (k not in defaults or defaults[k] != v)
    }
    if needed:
        wanted = ", ".join(f"{k}={v!r}" for k, v in needed.items())
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} takes no argument {', '.join(needed)}, and this model needs "
            f"{wanted} (not the default): add the argument to its __init__ and pass it on as the reference does"
        )
    return cls(**{k: v for k, v in arguments.items() if k in parameters})


def _parameters(cls):
    """The keyword arguments cls(...) takes, its own and those its __init__s pass on to their bases' (**kwargs);
    None when the last of them takes any keyword too."""
    inits = [
        vars(k)["__init__"] for k in cls.__mro__ if "__init__" in vars(k) and k not in (nn.Module, object)
    ]
    names = set()
    for init in inits:
        parameters = inspect.signature(init).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    last = inspect.signature(inits[-1]).parameters.values() if inits else ()
    return None if any(p.kind is p.VAR_KEYWORD for p in last) else names - {"self"}


def mae_from_config(config: dict, *, reference: bool = False) -> nn.Module:
    """The MAE with these constructor arguments (a checkpoint's model_config, say)."""
    return _construct(components(reference).MAE, MAE, config)


def encoder_from_config(config: dict, *, reference: bool = False) -> nn.Module:
    """The Encoder alone with the encoder's share of these constructor arguments (the rest are left out)."""
    return _construct(
        components(reference).Encoder, Encoder, {k: config[k] for k in ENCODER_KEYS if k in config}
    )


def create_model(name: str, *, reference: bool = False, **overrides) -> nn.Module:
    """Build the MAE called `name` (see CONFIGS), e.g. create_model("mae_vit_base_patch16", norm_pix_loss=True).

    Its classes come from the selected implementation (see components()), or from the reference with reference=True.
    """
    if name not in CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(CONFIGS)}")
    return mae_from_config({**CONFIGS[name], **overrides}, reference=reference)


def create_classifier(
    name: str,
    num_classes: int = 1000,
    global_pool: bool = True,
    drop_path_rate: float = 0.0,
    *,
    reference: bool = False,
    **overrides,
) -> nn.Module:
    """The encoder of `mae_<name>` as a classifier, e.g. create_classifier("vit_base_patch16", drop_path_rate=0.1)."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose one of: {', '.join(CLASSIFIERS)}")
    config = {k: v for k, v in CONFIGS["mae_" + name].items() if k in ENCODER_KEYS}
    arguments = dict(num_classes=num_classes, global_pool=global_pool, drop_path_rate=drop_path_rate)
    return _construct(
        components(reference).VisionTransformer, VisionTransformer, {**arguments, **config, **overrides}
    )


def _factory(name):
    """The function `name(**overrides)` = create_model(name, **overrides), as the official code names its factories."""

    def factory(**overrides):
        return create_model(name, **overrides)

    factory.__name__ = factory.__qualname__ = (
        name  # so that it pickles, and reads, as mae.models.factories.<name>
    )
    factory.__doc__ = f"create_model({name!r}, **overrides): the architecture in CONFIGS[{name!r}]."
    return factory


mae_vit_base_patch16 = _factory("mae_vit_base_patch16")
mae_vit_large_patch16 = _factory("mae_vit_large_patch16")
mae_vit_huge_patch14 = _factory("mae_vit_huge_patch14")
mae_vit_small_patch16 = _factory("mae_vit_small_patch16")
mae_vit_tiny_patch8 = _factory("mae_vit_tiny_patch8")
mae_vit_mini_patch8 = _factory("mae_vit_mini_patch8")
mae_vit_mini_patch4 = _factory("mae_vit_mini_patch4")


def config_of(model: nn.Module) -> dict:
    """The constructor arguments of a built MAE or Encoder: `model.config`, which the reference records.

    A learner's own class that records none is read instead: the sizes from its official attributes (the ones its
    weights' names need anyway), the head counts from its attention modules.
    """
    if getattr(model, "config", None) is not None:
        return dict(model.config)
    try:
        embed, first = model.patch_embed, model.blocks[0]
        img_size = tuple(embed.img_size) if not isinstance(embed.img_size, int) else (embed.img_size,) * 2
        dim = model.cls_token.shape[-1]
        config = dict(img_size=img_size[0] if img_size[0] == img_size[1] else img_size,
                      patch_size=embed.patch_size, in_chans=embed.in_chans, embed_dim=dim, depth=len(model.blocks),
                      num_heads=first.attn.num_heads, mlp_ratio=first.mlp.fc1.out_features / dim,
                      layer_norm_eps=first.norm1.eps)  # fmt: skip
        if hasattr(model, "decoder_blocks"):
            config.update(decoder_embed_dim=model.decoder_embed.out_features, decoder_depth=len(model.decoder_blocks),
                          decoder_num_heads=model.decoder_blocks[0].attn.num_heads,
                          norm_pix_loss=bool(model.norm_pix_loss))  # fmt: skip
    except (AttributeError, IndexError, TypeError) as error:
        raise TypeError(
            f"{type(model).__name__} records no config (the reference's Encoder sets self.config to its "
            f"constructor's arguments) and lacks what it could be read from: {error}"
        ) from None
    return config
