"""What the browser suite checks on a page, as functions that return the problems they find (empty: none).

test_site_in_browser.py asserts that each finds nothing on the real site; test_checks_catch_broken_sites.py
asserts that the same functions do find something on sites broken on purpose (Mermaid from a CDN, a diagram
with bad syntax, a label missing, text the colour of its background), so a check that can no longer fail
does not go unnoticed.

Nothing here imports Playwright: the fixtures in conftest.py skip with a reason when it is missing.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Request, Response, Route

LOCAL_HOST = "127.0.0.1"

# Material renders each diagram into a closed shadow root; tests need to read the SVG inside.
OPEN_SHADOW_ROOTS = """
(() => {
  const attach = Element.prototype.attachShadow;
  Element.prototype.attachShadow = function (init) { return attach.call(this, { ...init, mode: "open" }); };
})();
"""

# How long a page may take to render its diagrams; they take well under a second here.
DIAGRAM_TIMEOUT = 15.0

MERMAID_BLOCK = re.compile(r'<pre class="mermaid"><code>(.*?)</code></pre>', re.S)
# A chain name as a label shows it: kube-proxy's chains and the built-in ones.
CHAIN_NAME = re.compile(r"(?<![\w-])(?:KUBE-[A-Z0-9]+(?:-[A-Z0-9]+)*|PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING)(?![\w-])")
# The palette toggle's two schemes, as Material names them on <body data-md-color-scheme>.
SCHEMES = {"light": "default", "dark": "slate"}
# WCAG's minimum contrast for normal text (AA); Material's own diagram colours are far above it.
MIN_CONTRAST = 4.5


@dataclass
class Visit:
    """One page opened in a fresh browser context, with everything that went wrong while it was open."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def _on_route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == LOCAL_HOST:
            route.continue_()
        else:
            self.foreign_requests.append(url)
            route.abort("blockedbyclient")

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} (at {message.location.get('url', '?')})")

    def _on_request_failed(self, request: Request) -> None:
        if urlsplit(request.url).hostname == LOCAL_HOST:  # the others are in foreign_requests already
            self.failed_requests.append(f"{request.url}: {request.failure}")

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed_requests.append(f"{response.url}: HTTP {response.status}")

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    @property
    def has_errors(self) -> bool:
        return bool(self.console_errors or self.page_errors)


@contextmanager
def visiting(browser: Browser, url: str, *, color_scheme: str = "light") -> Iterator[Visit]:
    """Open `url` in a new context whose requests to any host but 127.0.0.1 are aborted and recorded."""
    context = browser.new_context(color_scheme=color_scheme, viewport={"width": 1280, "height": 900})
    try:
        context.add_init_script(OPEN_SHADOW_ROOTS)
        page = context.new_page()
        visit = Visit(page)
        context.route("**/*", visit._on_route)
        context.on("requestfailed", visit._on_request_failed)
        context.on("response", visit._on_response)
        page.on("console", visit._on_console)
        page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
        page.on("dialog", visit._on_dialog)
        page.goto(url, wait_until="load")
        yield visit
    finally:
        context.close()


def settle(visit: Visit) -> None:
    """Wait until the page has made every request it makes on its own (the search index comes late)."""
    visit.page.wait_for_load_state("networkidle")


def switch_scheme(visit: Visit, scheme: str) -> None:
    """Click the header's palette toggle, if needed, so that the page is in `scheme` ("light" or "dark")."""
    page = visit.page
    if page.get_attribute("body", "data-md-color-scheme") != SCHEMES[scheme]:
        page.locator("form[data-md-component=palette] label:visible").click()
    page.wait_for_function(f"document.body.dataset.mdColorScheme === {SCHEMES[scheme]!r}")


# The row of the page's :target (the anchor a link opened): its text, whether it is shown, and whether it is in
# view below the header.
TARGET_ROW = """() => {
  const target = document.querySelector(":target");
  if (!target) return null;
  const row = target.closest("tr");
  if (!row) return {id: target.id, row: null};
  const box = row.getBoundingClientRect();
  const header = document.querySelector(".md-header").getBoundingClientRect().bottom;
  return {id: target.id, text: row.innerText, shown: row.getClientRects().length > 0,
          inView: box.top >= header - 1 && box.top < window.innerHeight && box.bottom > header};
}"""


def load_problems(visit: Visit) -> list[str]:
    """Console errors, uncaught exceptions, failed or 4xx/5xx requests, dialogs."""
    return ([f"console error: {text}" for text in visit.console_errors]
            + [f"uncaught exception: {text}" for text in visit.page_errors]
            + [f"failed request: {text}" for text in visit.failed_requests]
            + [f"dialog opened: {text}" for text in visit.dialogs])


def foreign_request_problems(visit: Visit) -> list[str]:
    return [f"request to another host: {url}" for url in visit.foreign_requests]


def mermaid_sources(page_html: str) -> list[str]:
    """The text of each Mermaid block of a built page, as Mermaid receives it."""
    return [html.unescape(block) for block in MERMAID_BLOCK.findall(page_html)]


def chain_names(source: str) -> set[str]:
    """The chain names a diagram's labels show (link targets are not labels, so `click` lines are left out)."""
    labels = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("click "))
    return set(CHAIN_NAME.findall(labels))


_RENDERED_TEXTS = """() => [...document.querySelectorAll("div.mermaid")]
  .map(host => host.shadowRoot && host.shadowRoot.querySelector("svg"))
  .filter(svg => svg)
  .map(svg => svg.textContent)"""


def rendered_diagram_texts(visit: Visit, expected: int, timeout: float = DIAGRAM_TIMEOUT) -> list[str]:
    """The text of each diagram Material has rendered to an SVG, once there are `expected` of them, the
    page has reported an error (a diagram that fails does not render later) or `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        texts = visit.page.evaluate(_RENDERED_TEXTS)
        if len(texts) >= expected or visit.has_errors or time.monotonic() > deadline:
            return texts
        visit.page.wait_for_timeout(100)


def diagram_problems(visit: Visit, sources: list[str]) -> list[str]:
    """Every Mermaid block of the page (`sources`, from the built HTML) is an SVG labelled with its chains."""
    if not sources:
        return []
    texts = rendered_diagram_texts(visit, len(sources))
    problems = []
    if len(texts) != len(sources):
        problems.append(f"{len(texts)} of {len(sources)} Mermaid blocks rendered to an SVG")
        problems += [f"while rendering: {text}" for text in visit.page_errors + visit.console_errors]
    for number, (source, text) in enumerate(zip(sources, texts, strict=False), start=1):
        if "Syntax error" in text:
            problems.append(f"diagram {number} is Mermaid's syntax error picture")
        missing = sorted(name for name in chain_names(source) if name not in text)
        if missing:
            problems.append(f"diagram {number} has no label for {', '.join(missing)}")
    return problems


# For each label of each rendered diagram: its text colour and the colours under it, innermost first, up to
# the first opaque one (node shape or edge label background, the diagram's container, the page).
_LABEL_COLOURS = """() => {
  const stack = (start) => {
    const colours = [];
    for (let el = start; el; el = el.parentElement || (el.getRootNode() && el.getRootNode().host)) {
      const colour = getComputedStyle(el).backgroundColor;
      colours.push(colour);
      if (/^rgb\\(/.test(colour)) break;
    }
    return colours;
  };
  const found = [];
  document.querySelectorAll("div.mermaid").forEach((host, index) => {
    const svg = host.shadowRoot && host.shadowRoot.querySelector("svg");
    if (!svg) return;
    for (const node of svg.querySelectorAll("g.node")) {
      const shape = node.querySelector("rect, polygon, path, circle, ellipse");
      const label = node.querySelector(".nodeLabel") || node.querySelector("text");
      if (!label || !shape || !label.textContent.trim()) continue;
      const text = label instanceof SVGElement ? getComputedStyle(label).fill : getComputedStyle(label).color;
      found.push({diagram: index + 1, label: label.textContent.trim(), text,
                  under: [getComputedStyle(shape).fill, ...stack(host)]});
    }
    for (const label of svg.querySelectorAll("span.edgeLabel")) {
      if (!label.textContent.trim()) continue;
      found.push({diagram: index + 1, label: label.textContent.trim(), text: getComputedStyle(label).color,
                  under: stack(label)});
    }
  });
  return found;
}"""

_RGBA = re.compile(r"rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)")


def _rgba(colour: str) -> tuple[float, float, float, float]:
    match = _RGBA.fullmatch(colour.strip())
    if colour.strip() in ("none", "transparent"):
        return (0.0, 0.0, 0.0, 0.0)
    assert match, f"a colour this check does not read: {colour!r}"
    red, green, blue, alpha = match.groups()
    return (float(red), float(green), float(blue), 1.0 if alpha is None else float(alpha))


def _over(top: tuple[float, ...], bottom: tuple[float, ...]) -> tuple[float, ...]:
    """`top` (red, green, blue, alpha) painted over the opaque `bottom` (red, green, blue)."""
    alpha = top[3]
    return tuple(alpha * t + (1 - alpha) * b for t, b in zip(top[:3], bottom, strict=True))


def _luminance(rgb: tuple[float, ...]) -> float:
    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4
    red, green, blue = (channel(v) for v in rgb)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(text: str, under: list[str]) -> float:
    """WCAG contrast ratio of a text colour over a stack of background colours (innermost first)."""
    background: tuple[float, ...] = (255.0, 255.0, 255.0)
    for colour in reversed(under):
        background = _over(_rgba(colour), background)
    foreground = _over(_rgba(text), background)
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def readability_problems(visit: Visit) -> list[str]:
    """Every label of every rendered diagram stands out from what is under it (contrast of at least 4.5)."""
    labels = visit.page.evaluate(_LABEL_COLOURS)
    if not labels:
        return ["no diagram label to read"]
    problems = []
    for label in labels:
        ratio = contrast(label["text"], label["under"])
        if ratio < MIN_CONTRAST:
            under = " over ".join(colour for colour in label["under"] if _rgba(colour)[3] > 0)
            problems.append(f"diagram {label['diagram']}, label {label['label']!r}: contrast {ratio:.2f} "
                            f"(text {label['text']} over {under})")
    return problems


_DIFF_COLOURS = """() => {
  const style = (selector) => {
    const el = [...document.querySelectorAll(selector)].find(e => e.getClientRects().length);
    if (!el) return null;
    const computed = getComputedStyle(el);
    return {text: computed.color, background: computed.backgroundColor};
  };
  return {added: style("span.gi"), removed: style("span.gd"), plain: style(".highlight code")};
}"""


def diff_colour_problems(visit: Visit) -> list[str]:
    """In the visible diff, added and removed lines differ in colour from each other and from plain lines."""
    colours = visit.page.evaluate(_DIFF_COLOURS)
    missing = [kind for kind in ("added", "removed", "plain") if colours[kind] is None]
    if missing:
        return [f"no visible {kind} line in a diff" for kind in missing]
    added, removed, plain = colours["added"], colours["removed"], colours["plain"]
    problems = []
    if added == removed:
        problems.append(f"added and removed lines look the same: {added}")
    if added["text"] == plain["text"] and added["background"] == plain["background"]:
        problems.append(f"added lines look like plain ones: {added}")
    if removed["text"] == plain["text"] and removed["background"] == plain["background"]:
        problems.append(f"removed lines look like plain ones: {removed}")
    return problems
