"""Chapters 13-14's diagrams: the column data says what each block computes, and
every drawing function draws without error on a headless backend."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from normcourse import diagrams_frontier as df  # noqa: E402


def test_reordered_column_normalizes_each_branch_output_before_the_add():
    nodes, skips = df.column_layout("reordered")
    labels = [label for _, label in nodes]
    assert labels == ["x", "Attention", "LN", "+", "MLP", "LN", "+", "y"]
    # each skip starts below a sub-layer and lands on the "+" after its norm
    for src, dst, _ in skips:
        assert labels[dst] == "+" and labels[dst - 1] == "LN"
        assert labels[src] in ("x", "+")


def test_ngpt_column_has_no_add_and_normalizes_after_every_step():
    nodes, skips = df.column_layout("ngpt")
    labels = [label for _, label in nodes]
    assert "+" not in labels and labels.count("Norm") == 4
    for src, dst, _ in skips:
        assert labels[dst] == "lerp α" and labels[dst + 1] == "Norm"


def test_unknown_column_names_the_choices():
    with pytest.raises(ValueError, match="reordered"):
        df.column_layout("sandwich")


@pytest.mark.parametrize("draw", [
    lambda: df.draw_frontier_blocks(("pre", "reordered", "peri", "ngpt")),
    lambda: df.draw_qk_norm_attention().figure,
    lambda: df.draw_streams(4, constrained=False).figure,
    lambda: df.draw_streams(3, constrained=True).figure,
])
def test_drawings_render(draw):
    fig = draw()
    fig.canvas.draw()
    assert fig.axes and all(ax.get_title() or not ax.axison for ax in fig.axes)
    plt.close(fig)
