"""ipywidgets explorers for the notebooks.

Each explorer draws only when a slider moves: the notebook shows the same picture statically
just above it, so a headless run (nbval, papermill, CI) never renders inside a widget and its
output stays deterministic. A saved notebook opened before its cells run (on GitHub, or in
JupyterLab) shows one sentence in place of the sliders, not the widget's repr.
"""

import matplotlib.pyplot as plt
import torch

from .i18n import N_, _
from .visualize import (
    masked_images,
    show_patches,
    show_pos_embed_similarity,
    show_reconstruction,
    show_reconstruction_by_ratio,
    to_numpy_image,
)


def _explorer(draw, **sliders):
    """Sliders above an output area; every change redraws `draw(**values)` there."""
    import ipywidgets as widgets

    output = widgets.Output()

    def redraw(_change=None):
        with output:
            output.clear_output(wait=True)
            draw(**{name: slider.value for name, slider in sliders.items()})
            plt.show()

    for slider in sliders.values():
        slider.observe(redraw, names="value")
    hint = widgets.Label(_("Move a slider to draw (the static figure above shows the starting values)."))
    return _Explorer([*sliders.values(), hint, output])


def _Explorer(children):
    """A VBox whose text form, all that a saved notebook keeps of it, is a sentence rather than its repr."""
    import ipywidgets as widgets

    class Explorer(widgets.VBox):
        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs)
            bundle["text/plain"] = _(EXPLORER_TEXT)
            return bundle

    return Explorer(children)


EXPLORER_TEXT = N_("[Interactive explorer: run this cell in Jupyter to get its sliders.]")


def mask_ratio_explorer(model, imgs):
    """A slider for the mask ratio and one for the seed: see which patches the encoder gets."""
    import ipywidgets as widgets

    def draw(mask_ratio, seed):
        noise = torch.rand(1, model.patch_embed.num_patches, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            mask = model.forward_encoder(imgs[:1], mask_ratio=mask_ratio, noise=noise)[1]
        fig, ax = plt.subplots(figsize=(3.5, 3.5))
        ax.imshow(to_numpy_image(masked_images(model, imgs[:1], mask)))
        ax.set_title(
            _("{visible} of {count} patches visible").format(
                visible=int((mask == 0).sum()), count=mask.shape[1]
            ),
            fontsize=9,
        )
        ax.set_axis_off()

    return _explorer(
        draw,
        mask_ratio=widgets.FloatSlider(value=0.75, min=0.0, max=0.95, step=0.05, description=_("mask ratio")),
        seed=widgets.IntSlider(value=0, min=0, max=20, description=_("seed")),
    )


def patch_picker(imgs, patch_size):
    """Pick a patch index: see where it sits in the image (sequence order is row by row)."""
    import ipywidgets as widgets

    H, W = imgs.shape[-2:]
    count = (H // patch_size) * (W // patch_size)
    return _explorer(
        lambda index: show_patches(imgs, patch_size, highlight=index, numbers=False),
        index=widgets.IntSlider(value=0, min=0, max=count - 1, description=_("patch")),
    )


def position_picker(table, grid_size):
    """Pick a (row, col): see how similar its position embedding is to every other position's."""
    import ipywidgets as widgets

    h, w = grid_size
    return _explorer(
        lambda row, col: show_pos_embed_similarity(table, grid_size, [(row, col)]),
        row=widgets.IntSlider(value=h // 2, min=0, max=h - 1, description=_("row")),
        col=widgets.IntSlider(value=w // 2, min=0, max=w - 1, description=_("col")),
    )


def reconstruction_explorer(model, imgs):
    """Pick an image, a mask ratio and a seed: see the model's reconstruction.

    Without ipywidgets (a plain Python run) it returns the static figure instead: the first
    image at mask ratios 0.5, 0.75 and 0.9.
    """
    try:
        import ipywidgets as widgets
    except ImportError:
        return show_reconstruction_by_ratio(model, imgs[:1])

    def draw(index, mask_ratio, seed):
        noise = torch.rand(1, model.patch_embed.num_patches, generator=torch.Generator().manual_seed(seed))
        show_reconstruction(model, imgs[index : index + 1], mask_ratio=mask_ratio, noise=noise)

    return _explorer(
        draw,
        index=widgets.IntSlider(value=0, min=0, max=len(imgs) - 1, description=_("image")),
        mask_ratio=widgets.FloatSlider(value=0.75, min=0.0, max=0.95, step=0.05, description=_("mask ratio")),
        seed=widgets.IntSlider(value=0, min=0, max=20, description=_("seed")),
    )
