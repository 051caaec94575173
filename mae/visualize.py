"""Pictures of what the model sees and does: patches, positions, masks, attention, reconstructions; and the
accuracies the evaluations measure (images under ImageNet-C's corruptions: mae.corruptions).

Every function takes ImageNet-normalised (B, C, H, W) images (or tables) and returns the
matplotlib figure, so the notebooks stay one line per picture.
"""

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.ticker import PercentFormatter

from .attention_maps import attention_rollout, encoder_attentions
from .data.images import denormalize
from .i18n import N_, _
from .reconstruction import masked_images, reconstruct


def to_numpy_image(x):
    """(C, H, W) or (1, C, H, W) in [0, 1] -> (H, W, C) numpy array for matplotlib."""
    if x.ndim == 4:
        x = x[0]
    x = x.detach().float().cpu()
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def _show(ax, image, title=None):
    image = to_numpy_image(image)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


# The panels of mae.reconstruction.reconstruct and the fills of mae.inpainting.compare, named in English as keys;
# their titles are in the learner's language.
PANELS = (
    N_("original"),
    N_("reconstruction"),
    N_("reconstruction + visible"),
    N_("mean colour"),
    N_("biharmonic"),
)


def panel_title(name):
    """A panel's key ("original", "masked 75%", "biharmonic", ...) as its title in the learner's language."""
    if name.startswith("masked "):
        return _("masked {ratio}").format(ratio=name.removeprefix("masked "))
    return _(name)


def show_patches(imgs, patch_size, highlight=None, numbers=True):
    """The image cut into a grid of patches, numbered in sequence order (row by row)."""
    image = denormalize(imgs[:1])
    H, W = image.shape[-2:]
    h, w = H // patch_size, W // patch_size
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4.8), gridspec_kw={"width_ratios": [1, 1.1]})
    _show(
        left, image, _("{H}x{W} image, {h}x{w} patches of {p}x{p}").format(H=H, W=W, h=h, w=w, p=patch_size)
    )
    for i in range(1, h):
        left.axhline(i * patch_size - 0.5, color="white", lw=0.6)
    for j in range(1, w):
        left.axvline(j * patch_size - 0.5, color="white", lw=0.6)
    if numbers:
        for index in range(h * w):
            r, c = divmod(index, w)
            left.text((c + 0.5) * patch_size, (r + 0.5) * patch_size, str(index), color="yellow",
                      fontsize=6, ha="center", va="center")  # fmt: skip
    if highlight is not None:
        r, c = divmod(highlight, w)
        left.add_patch(plt.Rectangle((c * patch_size - 0.5, r * patch_size - 0.5), patch_size, patch_size,
                                     fill=False, edgecolor="red", lw=2))  # fmt: skip
    # The same patches as a sequence: the first two rows of the grid, side by side.
    patches = image.unfold(2, patch_size, patch_size).unfold(3, patch_size, patch_size)  # (1, C, h, w, p, p)
    patches = patches[0].permute(1, 2, 0, 3, 4).reshape(h * w, -1, patch_size, patch_size)  # (L, C, p, p)
    shown = min(2 * w, h * w)
    strip = F.pad(patches[:shown], (1, 1, 1, 1), value=1.0)  # white gaps
    strip = torch.cat(list(strip), dim=2)  # (C, p+2, shown*(p+2))
    _show(
        right,
        strip,
        _("... read as a sequence: tokens 0 to {last} of {count}").format(last=shown - 1, count=h * w),
    )
    fig.tight_layout()
    return fig


def show_pos_embed_similarity(table, grid_size, positions):
    """Cosine similarity between the embedding of each chosen (row, col) and every other position.

    One colour scale for all panels, spanning the similarities shown (sin-cos tables are far from
    orthogonal: on ViT-B's grid no two positions are below ~0.3), so the pattern is visible.
    """
    h, w = grid_size
    table = F.normalize(table.float(), dim=-1)  # (L, D)
    maps = [(table @ table[r * w + c]).reshape(h, w) for r, c in positions]
    low = min(m.min().item() for m in maps)
    fig, axes = plt.subplots(1, len(positions), figsize=(2.6 * len(positions), 2.8), squeeze=False)
    for ax, (r, c), similarity in zip(axes[0], positions, maps):
        image = ax.imshow(similarity.numpy(), cmap="viridis", vmin=low, vmax=1)
        ax.plot(c, r, marker="x", color="red")
        ax.set_title(_("similarity to ({r}, {c})").format(r=r, c=c), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label=_("cosine similarity"))
    return fig


def show_masking(model, imgs, ratios, seed=0):
    """One image under several mask ratios (the same noise for all, so kept sets are nested)."""
    noise = torch.rand(
        imgs.shape[0], model.patch_embed.num_patches, generator=torch.Generator().manual_seed(seed)
    )
    fig, axes = plt.subplots(1, len(ratios) + 1, figsize=(2.6 * (len(ratios) + 1), 3))
    _show(axes[0], denormalize(imgs[:1]), _("original"))
    with torch.no_grad():
        for ax, ratio in zip(axes[1:], ratios):
            mask = model.forward_encoder(imgs[:1], mask_ratio=ratio, noise=noise[:1])[1]
            kept = int((mask == 0).sum())
            _show(
                ax,
                masked_images(model, imgs[:1], mask),
                _("ratio {ratio:.2f}: {kept} of {count} kept").format(
                    ratio=ratio, kept=kept, count=mask.shape[1]
                ),
            )
    fig.tight_layout()
    return fig


def show_attention(weights, grid_size, image=None, query=0, heads=None):
    """Attention of one query token over the patches, one panel per head, on one colour scale.

    weights: (H, N, N) probabilities with the CLS token first; query 0 is the CLS token, query
    1 + r * w + c the patch at (r, c), outlined in red.
    """
    h, w = grid_size
    heads = range(weights.shape[0]) if heads is None else heads
    maps = [weights[head, query, -h * w :].reshape(h, w).detach() for head in heads]  # to the patch tokens
    top = max(m.max().item() for m in maps)
    panels = len(maps) + (image is not None)
    fig, axes = plt.subplots(1, panels, figsize=(2.4 * panels + 0.6, 2.7), squeeze=False)
    axes = list(axes[0])
    row, col = divmod(query - 1, w) if query > 0 else (None, None)
    if image is not None:
        ax = axes.pop(0)
        _show(ax, denormalize(image[:1]), _("image, query patch in red") if query > 0 else _("image"))
        if query > 0:
            p = image.shape[-1] // w
            ax.add_patch(
                plt.Rectangle((col * p - 0.5, row * p - 0.5), p, p, fill=False, edgecolor="red", lw=1.5)
            )
    for ax, head, attention in zip(axes, heads, maps):
        shown = ax.imshow(attention.numpy(), cmap="magma", vmin=0, vmax=top)
        if query > 0:
            ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5))
        ax.set_title(_("head {head}").format(head=head), fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    fig.colorbar(shown, ax=axes, shrink=0.8, label=_("attention weight"))
    return fig


@torch.no_grad()
def show_reconstruction(model, imgs, mask_ratio=0.75, noise=None, rows=1):
    """The official demo's figure, one row per image.

    The "reconstruction" column is the model's output for every patch, the visible ones included, which the
    loss never trained; the figure says so. In "reconstruction + visible" the visible patches are the input.
    """
    loss, panels = reconstruct(model, imgs[:rows], mask_ratio, None if noise is None else noise[:rows])
    fig, axes = plt.subplots(rows, 4, figsize=(10, 2.7 * rows), squeeze=False)
    titles = {
        "reconstruction": _("reconstruction\n(visible patches: never trained)"),
        "reconstruction + visible": _("reconstruction + visible\n(visible patches: the input)"),
    }
    for row in range(rows):
        for ax, (title, images) in zip(axes[row], panels.items()):
            _show(ax, images[row], titles.get(title, panel_title(title)) if row == 0 else None)
    note = (
        "\n"
        + _(
            "normalised-pixel targets: every patch drawn with its true mean and variance, taken from the original"
        )
        if model.norm_pix_loss
        else ""
    )
    fig.suptitle(_("loss on masked patches {loss:.3f}").format(loss=loss) + note, fontsize=9)
    fig.tight_layout()
    return fig


def show_inpainting(images, fills, mask, scores=None, rows=None, patch_size=8):
    """Original, masked, then each method's fill of the removed patches (visible pixels as given), one row per image.

    images: (B, 3, H, W) in [0, 1]; fills: {method: (B, 3, H, W)} from mae.inpainting.compare; mask: (B, L),
    1 = removed. Each filled panel is titled with its error on the removed pixels; `scores` (the errors over
    the whole set) go in the figure's title.
    """
    from .inpainting import masked_mse, pixel_mask

    rows = rows or images.shape[0]
    removed = pixel_mask(mask[:rows], images.shape[-1], patch_size)  # (rows, H, W)
    masked = torch.where(removed.unsqueeze(1), torch.full_like(images[:rows], 0.5), images[:rows])
    columns = {
        "original": images,
        f"masked {mask[0].mean().item():.0%}": masked,
        **fills,
    }  # shown by panel_title
    fig, axes = plt.subplots(rows, len(columns), figsize=(2.3 * len(columns), 2.5 * rows), squeeze=False)
    for row in range(rows):
        for ax, (name, shown) in zip(axes[row], columns.items()):
            label = panel_title(name) if row == 0 else None
            if name in fills:  # every filled panel: this image's error on its removed pixels
                error = masked_mse(shown[row : row + 1], images[row : row + 1], removed[row : row + 1])
                label = f"{panel_title(name)}\nMSE {error:.4f}" if row == 0 else f"MSE {error:.4f}"
            _show(ax, shown[row], label)
    if scores is not None:
        fig.suptitle(_("error on the removed pixels (MSE, pixels in [0, 1]), over the whole set: {scores}").format(
            scores=", ".join(f"{panel_title(name)} {mse:.4f}" for name, mse in scores.items())), fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def _tiles(patches, columns, patch_size, channels):
    """(N, p*p*C) patches in (p, q, c) order -> one [0, 1] image of tiles with white gaps, `columns` per row."""
    count = patches.shape[0]
    rows = -(-count // columns)
    tiles = patches.reshape(count, patch_size, patch_size, channels).permute(0, 3, 1, 2)  # (N, C, p, p)
    tiles = torch.cat([tiles, torch.ones(rows * columns - count, *tiles.shape[1:])])
    tiles = F.pad(tiles, (1, 1, 1, 1), value=1.0)  # (R*Cols, C, p+2, p+2)
    size = patch_size + 2
    return (
        tiles.reshape(rows, columns, channels, size, size)
        .permute(2, 0, 3, 1, 4)
        .reshape(channels, rows * size, -1)
    )


@torch.no_grad()
def show_encoder_input(model, imgs, mask_ratio=0.75, noise=None):
    """What the encoder gets: only the visible patches, as a short sequence."""
    p, C = model.patch_embed.patch_size, model.patch_embed.in_chans
    mask, ids_restore = model.forward_encoder(imgs[:1], mask_ratio=mask_ratio, noise=noise)[1:]
    pixels = model.patchify(denormalize(imgs[:1]))[0]  # (L, p*p*C)
    kept = torch.argsort(ids_restore[0])[: int((mask[0] == 0).sum())]  # ids_shuffle[:len_keep]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.8))
    _show(left, masked_images(model, imgs[:1], mask), _("masked {ratio:.0%}").format(ratio=mask_ratio))
    columns = max(1, int(len(kept) ** 0.5))
    _show(
        right,
        _tiles(pixels[kept], columns, p, C),
        _("encoder input: {kept} of {count} patches (+ CLS)").format(kept=len(kept), count=mask.shape[1]),
    )
    fig.tight_layout()
    return fig


@torch.no_grad()
def show_unshuffle(model, imgs, mask_ratio=0.75, noise=None, shown=24):
    """The decoder's sequence before and after ids_restore: visible tokens then mask tokens, put back in place."""
    p, C = model.patch_embed.patch_size, model.patch_embed.in_chans
    h, w = model.patch_embed.grid_size
    mask, ids_restore = model.forward_encoder(imgs[:1], mask_ratio=mask_ratio, noise=noise)[1:]
    pixels = model.patchify(denormalize(imgs[:1]))[0]  # (L, p*p*C)
    ids_shuffle = torch.argsort(ids_restore[0])
    len_keep = int((mask[0] == 0).sum())
    grey = torch.full_like(pixels[0], 0.5)
    sequence = torch.stack([pixels[i] if rank < len_keep else grey for rank, i in enumerate(ids_shuffle)])
    restored = sequence[ids_restore[0]]  # the gather with ids_restore
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), gridspec_kw={"height_ratios": [1, 3]})
    _show(top, _tiles(sequence[:shown], shown, p, C),
          _("decoder input, shuffled order: {visible} visible tokens, then {masked} mask tokens (first {shown})").format(
              visible=len_keep, masked=mask.shape[1] - len_keep, shown=shown))  # fmt: skip
    _show(
        bottom, _tiles(restored, w, p, C), _("after gather(..., ids_restore): every token back at its patch")
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- attention maps of a trained encoder


def show_attention_maps(model, imgs, rows=None):
    """Per image: the image, the CLS token's attention in the last block (mean over heads), and the rollout."""
    rows = rows or imgs.shape[0]
    h, w = model.patch_embed.grid_size
    maps = encoder_attentions(model, imgs[:rows])
    last = maps[-1].mean(dim=1)[:, 0, 1:].reshape(rows, h, w)  # CLS -> patches
    rollout = attention_rollout(maps)[:, 0, 1:].reshape(rows, h, w)
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.6 * rows), squeeze=False)
    for row in range(rows):
        _show(axes[row, 0], denormalize(imgs[row : row + 1]), _("image") if row == 0 else None)
        for ax, grid, title in (
            (axes[row, 1], last[row], _("CLS attention, last block")),
            (axes[row, 2], rollout[row], _("attention rollout")),
        ):
            ax.imshow(grid.numpy(), cmap="magma")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def show_reconstruction_by_ratio(model, img, ratios=(0.5, 0.75, 0.9), seed=0):
    """One image reconstructed at several mask ratios (nested masks: the same noise for all)."""
    noise = torch.rand(1, model.patch_embed.num_patches, generator=torch.Generator().manual_seed(seed))
    fig, axes = plt.subplots(2, len(ratios) + 1, figsize=(2.5 * (len(ratios) + 1), 5.2), squeeze=False)
    _show(axes[0, 0], denormalize(img[:1]), _("original"))
    axes[1, 0].set_axis_off()
    for column, ratio in enumerate(ratios, start=1):
        panels = reconstruct(model, img[:1], ratio, noise)[1]
        _show(axes[0, column], panels[f"masked {ratio:.0%}"][0], _("masked {ratio:.0%}").format(ratio=ratio))
        _show(axes[1, column], panels["reconstruction + visible"][0], _("reconstruction + visible"))
    if model.norm_pix_loss:
        fig.suptitle(
            _("normalised-pixel targets: de-normalised with the true patch mean and variance"), fontsize=9
        )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- accuracies


VALIDATION_ACCURACY = N_("validation accuracy")


def show_accuracies(table, xlabel=VALIDATION_ACCURACY, xlim=(0.0, 1.0), chance=None):
    """Grouped bars of `table` = {row: {column: accuracy, or a list of accuracies, one per seed}}.

    One group per row, one bar per column (a column keeps its colour in every group, and a row may lack some
    columns). With several seeds a bar is their mean and its whisker one standard deviation each way, the
    spread `mae.shifted_digits.mean_and_spread` prints; every bar carries its value. `chance`: the accuracy of a
    guess, drawn as a dotted line. Row and column names are keys, and are shown in the learner's language where
    the catalogue has them (mae.shifted_digits's, a notebook's tr(...) ones).
    """
    rows = list(table)
    columns = list(dict.fromkeys(column for row in rows for column in table[row]))
    height = 0.8 / len(columns)
    fig, ax = plt.subplots(figsize=(8.5, 0.8 + 0.32 * len(rows) * len(columns)))
    labelled = set()  # one legend entry per column
    for j, column in enumerate(columns):
        for i, row in enumerate(rows):
            if column not in table[row]:
                continue
            values = torch.tensor(table[row][column], dtype=torch.float64).flatten()
            mean = values.mean().item()
            spread = values.std().item() if len(values) > 1 else 0.0
            y = i - 0.4 + height * (j + 0.5)
            ax.barh(y, mean - xlim[0], left=xlim[0], height=0.9 * height, color=f"C{j}", xerr=spread or None,
                    capsize=3, label=None if column in labelled else _(column))  # fmt: skip
            labelled.add(column)
            end = mean + spread + 0.01 * (xlim[1] - xlim[0])
            if end + 0.08 * (xlim[1] - xlim[0]) < xlim[1]:  # the value after the bar, or inside it if no room
                ax.text(end, y, f"{mean:.1%}", va="center", fontsize=8)
            else:
                ax.text(mean - spread - 0.01 * (xlim[1] - xlim[0]), y, f"{mean:.1%}", va="center", ha="right",
                        fontsize=8, color="white")  # fmt: skip
    if chance is not None:
        ax.axvline(
            chance,
            color="grey",
            linestyle=":",
            zorder=0,
            label=_("chance ({chance:.0%})").format(chance=chance),
        )
    ax.set_yticks(range(len(rows)), [_(row) for row in rows])
    ax.invert_yaxis()
    ax.set_xlim(*xlim)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(_(xlabel))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)  # beside the bars, hiding none
    fig.tight_layout()
    return fig
