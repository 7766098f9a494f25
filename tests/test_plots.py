"""The book's figure style and layout helpers (normcourse.plots, normcourse.widgets)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from normcourse import plots, widgets  # noqa: E402
from normcourse.diagnostics import Diagnostics  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_importing_plots_sets_the_high_resolution_style():
    matplotlib.rcParams["figure.dpi"] = 72
    plots.use_book_style()
    assert matplotlib.rcParams["figure.dpi"] >= 200
    assert matplotlib.rcParams["savefig.dpi"] >= 200


@pytest.mark.parametrize("n, rows", [(1, 1), (2, 1), (3, 2), (4, 2), (6, 3)])
def test_panels_fit_the_text_column(n, rows):
    fig, axes = plots.panels(n, height=2.5)
    assert len(axes) == n and len(fig.axes) == n   # no empty panel left over
    width, height = fig.get_size_inches()
    assert width == pytest.approx(plots.COLUMN_WIDTH)
    assert height == pytest.approx(2.5 * rows)


def test_panels_can_be_stacked_in_one_column():
    fig, axes = plots.panels(3, ncols=1)
    assert [ax.get_subplotspec().colspan.start for ax in axes] == [0, 0, 0]
    with pytest.raises(ValueError, match="n must be at least 1"):
        plots.panels(0)


@pytest.mark.parametrize("n_layer", [3, 6, 12, 24])
def test_layer_ticks_are_whole_layers_from_one(n_layer):
    ax = plots.depth_lines({"a": [1.0 + i for i in range(n_layer)]})
    ax.figure.canvas.draw()
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() and 1 <= t <= n_layer for t in ticks)


def test_distinct_styles_never_repeat():
    styles = plots.distinct_styles(18)
    assert len({(s["color"], s["linestyle"]) for s in styles}) == 18
    with pytest.raises(ValueError, match="at most"):
        plots.distinct_styles(1000)


def _diag_with_many_matrices(n_matrices=18):
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(n_matrices)])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Diagnostics(model, optimizer=opt) as diag:
        for _ in range(2):
            model(torch.randn(3, 4)).sum().backward()
            opt.step()
            opt.zero_grad()
    return diag


def test_update_ratio_legend_entries_are_all_distinguishable():
    # chapter 12 plots 18 weight matrices; the colour cycle has 10 colours
    ax = plots.update_ratio_plot(_diag_with_many_matrices(18))
    lines = [line for line in ax.lines if line.get_label() != "1e-3 guide"]
    assert len(lines) == 18
    looks = {(line.get_color(), line.get_linestyle()) for line in lines}
    assert len(looks) == len(lines), "two matrices share a colour and line style"


def test_annotated_heatmap_writes_every_non_empty_cell():
    nan = float("nan")
    fig, ax = plt.subplots()
    image = plots.annotated_heatmap([[1.0, nan], [3.0, 4.0]], [["a", ""], ["c", "d"]],
                                    ["x1", "x2"], ["y1", "y2"], ax=ax, dark_above=2.0)
    assert [t.get_text() for t in ax.texts] == ["a", "c", "d"]
    assert [t.get_color() for t in ax.texts] == ["black", "white", "white"]
    assert image.get_array().shape == (2, 2)


def test_gradient_profile_explorer_and_its_static_twin():
    def profile(placement, n_layer, embed_scale):
        return [embed_scale * (i + 1) for i in range(n_layer)]

    ax = widgets.draw_gradient_profiles(profile, ["post", "pre"], 6, 1.0,
                                        titles={"post": "Post-LN"})
    assert [line.get_label() for line in ax.lines] == ["Post-LN", "pre"]
    assert ax.get_yscale() == "log" and ax.get_title()
    pytest.importorskip("ipywidgets")
    explorer = widgets.gradient_profile_explorer(profile, ["post", "pre", "peri"])
    assert len(explorer.children) == 4   # three controls and the output
