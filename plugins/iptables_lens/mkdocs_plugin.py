"""The `iptables-lens` MkDocs plugin: thin glue between MkDocs events and the core.

Declared in mkdocs.yml as `plugins: [iptables-lens]`. `on_config` checks the plugin's options. `on_files`
loads and checks each scenario folder under `scenarios` (the checks of `iptables-lens validate` but the
kernel's) and adds its pages, made by `render.site`, through mkdocs-gen-files: an overview, a page per node and
a page per traced flow, and the Service features of all of them; it lists them in the navigation.
`on_post_page` fills in the big tables of large dumps, and `mkdocs serve` rebuilds when a file under the
scenarios folder changes. A bad option, scenario or dump fails the build with MkDocs' PluginError, naming
the file, line and column.
"""

from __future__ import annotations

import html
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import Files, InclusionLevel
from mkdocs_gen_files.editor import FilesEditor

from iptables_lens.errors import DumpError
from iptables_lens.gcpause import paused_gc
from iptables_lens.render.large import PLACEHOLDER_PATTERN
from iptables_lens.render.site import GeneratedPage, site_pages
from iptables_lens.scenario.load import METADATA_FILE, find_scenarios

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.livereload import LiveReloadServer
    from mkdocs.structure.pages import Page


class IptablesLensConfig(base.Config):
    scenarios = c.Type(str, default="dumps")
    """Folder holding one sub-folder per scenario, relative to mkdocs.yml."""
    include = c.ListOfItems(c.Type(str), default=[])
    """Scenario folder names to build; empty means all of them."""
    pages_root = c.Type(str, default="scenarios")
    """Where under the site the generated pages go."""
    nav_title = c.Type(str, default="Scenarios")
    """The navigation section that lists the generated pages."""


class IptablesLensPlugin(BasePlugin[IptablesLensConfig]):
    root: Path
    """The folder of mkdocs.yml, which relative paths start from."""
    scenarios_dir: Path
    pages: list[GeneratedPage]
    deferred: dict[str, dict]
    _written: tempfile.TemporaryDirectory
    """Where mkdocs-gen-files keeps the generated pages during a build."""
    """Page path -> its placeholders and what renders each (see render.large)."""

    def on_config(self, config: MkDocsConfig) -> MkDocsConfig | None:
        self.root = Path(config.config_file_path).parent
        self.scenarios_dir = (self.root / self.config.scenarios).resolve()
        if not self.scenarios_dir.is_dir():
            raise PluginError(f"iptables-lens: scenarios folder {self.scenarios_dir} does not exist")
        found = {folder.name for folder in find_scenarios(self.scenarios_dir)}
        unknown = [name for name in self.config.include if name not in found]
        if unknown:
            raise PluginError(f"iptables-lens: include names {', '.join(map(repr, unknown))}, but "
                              f"{self.scenarios_dir} has no such folder with a {METADATA_FILE}")
        return config

    def on_files(self, files: Files, /, *, config: MkDocsConfig) -> Files | None:
        folders = find_scenarios(self.scenarios_dir, self.config.include)
        try:
            self.pages = site_pages(folders, self.config.pages_root, config.use_directory_urls, self.root)
        except DumpError as error:
            raise PluginError(f"iptables-lens: {error}") from None
        self._written = tempfile.TemporaryDirectory(prefix="iptables-lens-pages-")
        with FilesEditor(files, config, self._written.name) as editor:
            for page in self.pages:
                with editor.open(page.path, "w") as handle:
                    handle.write(page.markdown)
        hidden = {page.path for page in self.pages if not page.in_nav}
        for file in editor.files:
            # The pages of a big dump are reached from its index page; listing thousands of them in the
            # navigation would repeat the list on every page.
            if file.src_uri in hidden:
                file.inclusion = InclusionLevel.NOT_IN_NAV
        self.deferred = {page.path: page.deferred for page in self.pages if page.deferred}
        if config.nav is not None and self.pages:
            # MkDocs makes the navigation from config.nav right after this event: listed there, the pages get
            # their parents and neighbours like any other, and the check that every page is listed holds.
            config.nav.append({self.config.nav_title: _nest(self.pages)})
        return editor.files

    def on_post_page(self, output: str, /, *, page: Page, config: MkDocsConfig) -> str | None:
        deferred = self.deferred.get(page.file.src_uri)
        if deferred:
            # One pass over the page, whatever the number of tables it holds.
            with paused_gc():
                output = PLACEHOLDER_PATTERN.sub(lambda m: deferred[m.group(1)](), output)
        return output

    def on_post_build(self, *, config: MkDocsConfig) -> None:
        written = getattr(self, "_written", None)
        if written is not None:
            written.cleanup()

    def on_serve(self, server: LiveReloadServer, /, *, config: MkDocsConfig, builder: Callable
                 ) -> LiveReloadServer | None:
        server.watch(str(self.scenarios_dir))
        return server


def _nest(pages: list[GeneratedPage]) -> list:
    """The navigation: the page of every scenario (the Service features) first, then one section per
    scenario, its overview first, then its nodes and flows.

    Titles come from scenario files, and themes print navigation titles as HTML without escaping them,
    so they are escaped here.
    """
    sections: dict[str, list] = {}
    titles: dict[str, str] = {}
    shared = [{html.escape(page.title): page.path} for page in pages if page.in_nav and not page.scenario]
    for page in pages:
        if not page.in_nav or not page.scenario:
            continue
        sections.setdefault(page.scenario, [])
        title = html.escape(page.title)
        if page.kind == "overview":
            titles[page.scenario] = title
            sections[page.scenario].insert(0, {"Overview": page.path})
        else:
            sections[page.scenario].append({title: page.path})
    return shared + [{titles.get(name, name): entries} for name, entries in sections.items()]
