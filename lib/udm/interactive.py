"""Figures a reader can move in the static book: precomputed frames behind a slider.

An ipywidgets slider needs a live kernel; the rendered book has none. Here every frame is
drawn in advance (matplotlib, PNG) and the output is one self-contained piece of HTML: the
frames as data URIs, a labelled range input, the current value, and a play button, wired by a
few lines of inline JavaScript. It works in the HTML book with no kernel and no network, and in
JupyterLab as a cell's HTML output. In print (the PDF) it shows the first frame and says which.

    from udm import interactive
    interactive.slider(draw, values=[0.1, 0.5, 1.0], label="noise level t",
                       alt="the noised data at noise level t", value_format="{:.1f}")

``draw(value)`` returns a matplotlib figure; it is rendered and closed. Give every frame the same
size and axes limits (and ``layout="constrained"``, so no label is cut off), or the picture
jumps as the slider moves. Keep the frames small: the HTML of one figure must stay under
``max_bytes`` (about 1 MB); 10 to 30 frames at the default 80 dpi fit easily.

Book: the interactive figures of every chapter.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 1_000_000
_counter = itertools.count(1)

STYLE = """<style>
.udm-interactive { margin: 1em 0; max-width: 100%; }
.udm-interactive img { display: block; max-width: 100%; height: auto; }
.udm-interactive-controls { display: flex; flex-wrap: wrap; align-items: center; gap: 0.6em;
  margin-top: 0.4em; font-size: 0.95em; }
.udm-interactive-controls input[type=range] { flex: 1 1 12em; min-width: 8em; }
.udm-interactive-controls output { min-width: 4em; font-variant-numeric: tabular-nums; }
.udm-interactive-controls button { padding: 0.15em 0.7em; cursor: pointer; }
.udm-interactive-print { display: none; font-size: 0.9em; }
@media print {
  .udm-interactive-controls { display: none; }
  .udm-interactive-print { display: block; }
}
</style>"""

# Wires one figure: the script sits inside its container (document.currentScript), so any
# number of figures can share a page; it runs once even if the output is displayed twice.
SCRIPT = """<script>
(function () {
  var root = document.currentScript && document.currentScript.closest(".udm-interactive");
  if (!root || root.getAttribute("data-ready")) return;
  root.setAttribute("data-ready", "1");
  var data = JSON.parse(root.querySelector(".udm-interactive-data").textContent);
  var img = root.querySelector("img"), slider = root.querySelector("input[type=range]");
  var out = root.querySelector("output"), play = root.querySelector("button");
  var last = data.values.length - 1, timer = null;
  data.frames[data.initial] = img.getAttribute("src");
  function show(i) {
    i = Math.max(0, Math.min(last, Math.round(i)));
    img.src = data.frames[i];
    img.alt = data.alt + " (" + data.label + " = " + data.values[i] + ")";
    out.textContent = data.values[i];
    slider.value = String(i);
    slider.setAttribute("aria-valuetext", data.label + " = " + data.values[i]);
  }
  function stop() {
    clearInterval(timer);
    timer = null;
    play.setAttribute("aria-pressed", "false");
    play.textContent = "\\u25B6 Play";
  }
  slider.addEventListener("input", function () { show(Number(slider.value)); });
  slider.addEventListener("change", function () { show(Number(slider.value)); });
  play.addEventListener("click", function () {
    if (timer) { stop(); return; }
    if (Number(slider.value) >= last) show(0);
    play.setAttribute("aria-pressed", "true");
    play.textContent = "\\u275A\\u275A Pause";
    timer = setInterval(function () {
      if (Number(slider.value) >= last) { stop(); return; }
      show(Number(slider.value) + 1);
    }, data.interval);
  });
})();
</script>"""


def png_bytes(figure: Figure, dpi: float = 80, quantize: bool = True) -> bytes:
    """``figure`` as a PNG (closed afterwards), with an adaptive 256-colour palette if
    ``quantize``: about three times smaller for line plots, with no visible change."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    if not quantize:
        return buffer.getvalue()
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    return out.getvalue()


def _format(value: Any, value_format: str | Callable[[Any], str]) -> str:
    return value_format(value) if callable(value_format) else value_format.format(value)


@dataclass(frozen=True)
class InteractiveFigure:
    """Precomputed PNG frames, one per value, shown with a slider and a play button.

    ``label`` names the parameter (it labels the slider), ``alt`` describes the image (each
    frame's alt text adds "(label = value)"), ``values`` are shown as ``value_format`` makes
    them. ``initial`` is the frame shown first (and in print). Displays as HTML.
    """

    frames: Sequence[bytes]
    values: Sequence[Any]
    label: str
    alt: str
    value_format: str | Callable[[Any], str] = "{}"
    initial: int = 0
    interval_ms: int = 500
    max_bytes: int = MAX_BYTES
    html: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        frames, values = list(self.frames), list(self.values)
        if len(frames) < 2:
            raise ValueError(f"frames must hold at least two PNG images, got {len(frames)}")
        if len(values) != len(frames):
            raise ValueError(
                f"values must give one value per frame: {len(values)} values, {len(frames)} frames"
            )
        for index, frame in enumerate(frames):
            if not isinstance(frame, bytes) or not frame.startswith(PNG_SIGNATURE):
                raise ValueError(f"frames[{index}] must be PNG bytes (see png_bytes)")
        for name in ("label", "alt"):
            text = getattr(self, name)
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{name} must be a non-empty string, got {text!r}")
        if isinstance(self.initial, bool) or not 0 <= self.initial < len(frames):
            raise ValueError(
                f"initial must be a frame index in [0, {len(frames)}), got {self.initial}"
            )
        if isinstance(self.interval_ms, bool) or not 20 <= self.interval_ms <= 10_000:
            raise ValueError(f"interval_ms must be between 20 and 10000, got {self.interval_ms}")
        shown = [_format(value, self.value_format) for value in values]
        page = self._render(frames, shown)
        if len(page.encode()) > self.max_bytes:
            raise ValueError(
                f"the figure's HTML is {len(page.encode()) / 1e6:.2f} MB, over the budget of "
                f"{self.max_bytes / 1e6:.2f} MB: use fewer frames, a lower dpi or a smaller figure"
            )
        object.__setattr__(self, "html", page)

    def _render(self, frames: list[bytes], shown: list[str]) -> str:
        uris = ["data:image/png;base64," + base64.b64encode(frame).decode() for frame in frames]
        digest = hashlib.sha1("".join(uris + shown + [self.label]).encode()).hexdigest()[:10]
        uid = f"udm-interactive-{digest}-{next(_counter)}"
        width, height = Image.open(io.BytesIO(frames[self.initial])).size
        data = {
            "frames": [None if i == self.initial else uri for i, uri in enumerate(uris)],
            "values": shown,
            "label": self.label,
            "alt": self.alt,
            "initial": self.initial,
            "interval": self.interval_ms,
        }
        # "</" cannot end the script element early once escaped.
        payload = json.dumps(data).replace("</", "<\\/")
        first, label, alt = shown[self.initial], html.escape(self.label), html.escape(self.alt)
        return (
            f'<div class="udm-interactive" id="{uid}">{STYLE}'
            f'<img src="{uris[self.initial]}" width="{width}" height="{height}" '
            f'alt="{alt} ({label} = {html.escape(first)})">'
            f'<p class="udm-interactive-print">Shown: {label} = {html.escape(first)} '
            f"(the HTML version of the book has a slider).</p>"
            f'<div class="udm-interactive-controls">'
            f'<button type="button" aria-pressed="false" aria-controls="{uid}-slider">'
            f"\u25b6 Play</button>"
            f'<label for="{uid}-slider">{label}</label>'
            f'<input type="range" id="{uid}-slider" min="0" max="{len(frames) - 1}" step="1" '
            f'value="{self.initial}" aria-valuetext="{label} = {html.escape(first)}">'
            f'<output for="{uid}-slider" aria-live="polite">{html.escape(first)}</output>'
            f"</div>"
            f'<script type="application/json" class="udm-interactive-data">{payload}</script>'
            f"{SCRIPT}</div>"
        )

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return (
            f"InteractiveFigure({self.label!r}, {len(self.frames)} frames, "
            f"{len(self.html.encode()) / 1e3:.0f} kB)"
        )


def slider(
    draw: Callable[[Any], Figure],
    values: Sequence[Any],
    *,
    label: str,
    alt: str,
    value_format: str | Callable[[Any], str] = "{}",
    initial: int = 0,
    interval_ms: int = 500,
    dpi: float = 80,
    max_bytes: int = MAX_BYTES,
) -> InteractiveFigure:
    """One frame per value, drawn by ``draw(value)`` (a matplotlib figure, closed after
    rendering), behind a slider labelled ``label``; see :class:`InteractiveFigure`.

    Book: the interactive figures of every chapter.
    """
    if not callable(draw):
        raise TypeError(f"draw must be a function of a value returning a figure, got {draw!r}")
    frames = []
    for value in values:
        figure = draw(value)
        if not isinstance(figure, Figure):
            raise TypeError(f"draw({value!r}) must return a matplotlib Figure, got {figure!r}")
        frames.append(png_bytes(figure, dpi=dpi))
    return InteractiveFigure(
        frames,
        list(values),
        label=label,
        alt=alt,
        value_format=value_format,
        initial=initial,
        interval_ms=interval_ms,
        max_bytes=max_bytes,
    )
