"""`iptables-lens render`'s files: the generated pages written to a folder, and a small MkDocs site of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iptables_lens.render.site import GeneratedPage


def write_pages(pages: Sequence[GeneratedPage], folder: Path) -> list[str]:
    """Write each page under `folder` (each file replaced at once, never half written); the paths written."""
    written = []
    for page in pages:
        target = folder / page.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(page.markdown)
        tmp.replace(target)
        written.append(str(target))
    return written


def build_small_site(folder: Path, pages: Sequence[GeneratedPage]) -> str:
    """mkdocs.yml for the pages, then a build: Material, offline, the same Markdown extensions as this site.
    The site's folder."""
    import yaml

    config = {
        "site_name": "iptables-lens: my dumps",
        "docs_dir": "docs",
        "site_dir": "site",
        "theme": {"name": "material", "font": False},
        "markdown_extensions": ["admonition", "attr_list", "md_in_html", "tables", "pymdownx.details",
                                "pymdownx.highlight", "pymdownx.superfences",
                                {"pymdownx.tabbed": {"alternate_style": True}}],
        "plugins": ["search"],
        "nav": [{"Dumps": "index.md"}] + [{p.title: p.path} for p in pages],
    }
    (folder / "mkdocs.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    build(load_config(str(folder / "mkdocs.yml")))
    return str(folder / "site")
