"""The block diagrams show the structure that normcourse.blocks computes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from normcourse.blocks import NORM_SLOTS, PLACEMENTS  # noqa: E402
from normcourse.diagrams import TITLES, block_layout, draw_block, draw_blocks  # noqa: E402


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_layout_matches_the_block(placement):
    nodes, skips = block_layout(placement)
    labels = [label for _, label in nodes]
    assert labels[0] == "x" and labels[-1] == "y"
    assert labels.count("LN") == len(NORM_SLOTS[placement]), "one LN box per norm module"
    assert labels.count("Attention") == 1 and labels.count("MLP") == 1
    assert labels.index("Attention") < labels.index("MLP")
    assert labels.count("+") == 2, "two residual additions per block"
    for src, dst, _ in skips:
        assert src < dst and labels[dst] == "+", "a skip jumps forward onto an addition"


def test_distinguishing_features():
    post, _ = block_layout("post")
    pre, _ = block_layout("pre")
    assert [lbl for _, lbl in post][1] == "Attention", "post-LN: the sub-layer sees x directly"
    assert [lbl for _, lbl in pre][1] == "LN", "pre-LN: x is normalized before the sub-layer"
    _, b2t = block_layout("b2t")
    assert (0, 5, "B2T") in b2t, "B2T carries the block input to the last addition"
    _, deep = block_layout("deepnorm")
    assert all(label == "×α" for _, _, label in deep), "DeepNorm scales every skip by alpha"
    peri, _ = block_layout("peri")
    labels = [lbl for _, lbl in peri]
    assert labels[labels.index("Attention") + 1] == "LN", "peri-LN normalizes the sub-layer output"


def test_unknown_placement():
    with pytest.raises(ValueError, match="unknown placement"):
        block_layout("middle")


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_draw_block(placement):
    ax = draw_block(placement)
    assert ax.get_title() == TITLES[placement]
    texts = [t.get_text() for t in ax.texts]
    nodes, _ = block_layout(placement)
    assert all(label in texts for _, label in nodes)
    plt.close(ax.figure)


def test_draw_blocks():
    fig = draw_blocks()
    assert len(fig.axes) == len(PLACEMENTS)
    assert fig.legends, "the figure explains its colours"
    plt.close(fig)
