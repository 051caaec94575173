"""The notebooks' widgets (mae.widgets): drawn on change and not before; a static figure without ipywidgets."""


def test_widgets_redraw_on_change_and_not_before(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import mae
    from mae import widgets
    from mae.data.images import sample_photo, to_tensor

    drawn = []
    monkeypatch.setattr(plt, "show", lambda: drawn.append(True))
    model = mae.mae_vit_tiny_patch8()
    explorer = widgets.mask_ratio_explorer(model, to_tensor(sample_photo("coffee"), size=64))
    assert drawn == []  # nothing rendered at creation: headless runs stay deterministic
    explorer.children[0].value = 0.5
    assert drawn == [True]


def test_reconstruction_explorer_draws_on_change_and_falls_back_to_a_figure(monkeypatch):
    import builtins

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import mae
    from mae import widgets
    from mae.data.images import photo_crops

    drawn = []
    monkeypatch.setattr(plt, "show", lambda: drawn.append(True))
    model = mae.mae_vit_tiny_patch8(norm_pix_loss=True).eval()
    imgs = photo_crops(2, size=64)
    explorer = widgets.reconstruction_explorer(model, imgs)
    assert drawn == []
    explorer.children[1].value = 0.5  # the mask ratio
    assert drawn == [True]

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "ipywidgets" else real_import(name, *a, **k))  # fmt: skip
    figure = widgets.reconstruction_explorer(model, imgs)  # no ipywidgets: the static figure
    assert isinstance(figure, matplotlib.figure.Figure) and "true patch mean" in figure._suptitle.get_text()
