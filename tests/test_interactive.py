"""udm.interactive: self-contained slider figures (the browser suite moves them)."""

from __future__ import annotations

import base64
import io
import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from udm import interactive  # noqa: E402

VALUES = [0.1, 0.5, 0.9]


def draw(t: float) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(3, 2))
    x = np.linspace(-3, 3, 200)
    axis.plot(x, np.exp(-(x**2) / (2 * (1 - t + 0.05))), color="C0")
    axis.set_title(f"t = {t}")
    return figure


@pytest.fixture(scope="module")
def figure() -> interactive.InteractiveFigure:
    return interactive.slider(
        draw, VALUES, label="noise level t", alt="a bell curve", value_format="{:.1f}"
    )


def _data(page: str) -> dict:
    found = re.search(
        r'<script type="application/json" class="udm-interactive-data">(.*?)</script>', page
    )
    return json.loads(found[1])


def test_html_is_self_contained_and_labelled(figure: interactive.InteractiveFigure) -> None:
    page = figure._repr_html_()
    assert page == figure.html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), (
        "nothing may load from the network"
    )
    slider_id = re.search(
        r'<input type="range" id="([^"]+)" min="0" max="2" step="1" value="0"', page
    )[1]
    assert f'<label for="{slider_id}">noise level t</label>' in page
    assert f'<output for="{slider_id}" aria-live="polite">0.1</output>' in page
    assert 'alt="a bell curve (noise level t = 0.1)"' in page
    assert '<button type="button" aria-pressed="false"' in page
    data = _data(page)
    assert data["values"] == ["0.1", "0.5", "0.9"]
    assert data["frames"][0] is None, "the first frame is the <img> itself, not stored twice"
    assert all(uri.startswith("data:image/png;base64,") for uri in data["frames"][1:])


def test_frames_are_the_drawn_figures(figure: interactive.InteractiveFigure) -> None:
    decoded = [Image.open(io.BytesIO(frame)).convert("RGB") for frame in figure.frames]
    assert all(image.size == (240, 160) for image in decoded), "3 x 2 inches at 80 dpi"
    pixels = [np.asarray(image, dtype=float) for image in decoded]
    assert np.abs(pixels[0] - pixels[1]).mean() > 1, "different values draw different frames"
    uri = _data(figure.html)["frames"][2]
    assert base64.b64decode(uri.split(",", 1)[1]) == figure.frames[2]


def test_figures_are_closed_after_rendering(figure: interactive.InteractiveFigure) -> None:
    assert plt.get_fignums() == []


def test_palette_makes_frames_smaller_without_visible_change() -> None:
    full = interactive.png_bytes(draw(0.5), quantize=False)
    small = interactive.png_bytes(draw(0.5))
    assert len(small) < 0.7 * len(full)
    a, b = (
        np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float) for png in (full, small)
    )
    assert np.abs(a - b).mean() < 2.0, "at most a couple of grey levels on average"


def test_page_size_budget_is_enforced() -> None:
    with pytest.raises(ValueError, match=r"over the budget of 0\.01 MB: use fewer frames"):
        interactive.slider(draw, VALUES, label="t", alt="a curve", max_bytes=10_000)


def test_two_figures_get_different_ids() -> None:
    ids = [
        re.search(r'id="([^"]+)"', interactive.slider(draw, VALUES, label="t", alt="a curve").html)[
            1
        ]
        for _ in range(2)
    ]
    assert ids[0] != ids[1]


def test_text_is_escaped() -> None:
    page = interactive.slider(
        lambda name: draw(0.5), ["<b>", "x</script>"], label="a <label>", alt='say "hi"'
    ).html
    assert "a &lt;label&gt;" in page and "say &quot;hi&quot;" in page
    assert "x</script>" not in page.split('class="udm-interactive-data">')[1].split("</script>")[0]


def _png() -> bytes:
    return interactive.png_bytes(draw(0.5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frames": [b"x", b"y"]}, r"frames\[0\] must be PNG bytes"),
        ({"frames": ["a.png", "b.png"]}, r"frames\[0\] must be PNG bytes"),
        ({"values": [1]}, "one value per frame: 1 values, 2 frames"),
        ({"frames": [], "values": []}, "at least two PNG images, got 0"),
        ({"label": " "}, "label must be a non-empty string"),
        ({"alt": ""}, "alt must be a non-empty string"),
        ({"initial": 2}, r"initial must be a frame index in \[0, 2\), got 2"),
        ({"interval_ms": 0}, "interval_ms must be between 20 and 10000"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict, message: str) -> None:
    png = _png()
    arguments = {"frames": [png, png], "values": [1, 2], "label": "t", "alt": "a curve"} | kwargs
    with pytest.raises(ValueError, match=message):
        interactive.InteractiveFigure(**arguments)


def test_draw_must_return_a_figure() -> None:
    with pytest.raises(TypeError, match=r"draw\(1\) must return a matplotlib Figure"):
        interactive.slider(lambda v: None, [1, 2], label="t", alt="a curve")
