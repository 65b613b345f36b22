"""The `iptables-lens` MkDocs plugin: thin glue between MkDocs events and the core.

Declared in mkdocs.yml as `plugins: [iptables-lens]`. For each scenario folder under `scenarios` it adds an
overview page, a page per node and a page per traced flow, written through mkdocs-gen-files so they are
ordinary (virtual) pages; it lists them in the navigation; and `mkdocs serve` rebuilds when a file under
the scenarios folder changes. A bad scenario or dump fails the build with MkDocs' PluginError, naming the
file, line and column.
"""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path

from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import InclusionLevel
from mkdocs_gen_files.editor import FilesEditor

from iptables_lens.errors import DumpError
from iptables_lens.gcpause import paused_gc
from iptables_lens.render.large import PLACEHOLDER_PATTERN
from iptables_lens.render.site import GeneratedPage, scenario_pages
from iptables_lens.scenario.load import Scenario, find_scenarios
from iptables_lens.scenario.validate import load_checked


class IptablesLensConfig(base.Config):
    scenarios = c.Type(str, default="dumps")
    """Folder holding one sub-folder per scenario, relative to mkdocs.yml."""
    include = c.ListOfItems(c.Type(str), default=[])
    """Scenario folder names to build; empty means all of them."""
    pages_root = c.Type(str, default="scenarios")
    """Where under the site the generated pages go."""
    nav_title = c.Type(str, default="Scenarios")
    """The navigation section that lists the generated pages."""
    examples_dir = c.Type(str, default="")
    """If set, a folder where the generated Markdown is also written, so its examples can run as tests."""


class IptablesLensPlugin(BasePlugin[IptablesLensConfig]):
    def on_config(self, config):
        self.root = Path(config.config_file_path).parent
        self.scenarios_dir = (self.root / self.config.scenarios).resolve()
        if not self.scenarios_dir.is_dir():
            raise PluginError(f"iptables-lens: scenarios folder {self.scenarios_dir} does not exist")
        self.scenarios = self._load()
        self.pages: list[GeneratedPage] = []
        try:
            for scenario in self.scenarios:
                self.pages += scenario_pages(scenario, self.config.pages_root, config.use_directory_urls, self.root)
        except DumpError as error:
            raise PluginError(f"iptables-lens: {error}") from None
        self.deferred = {page.path: page.deferred for page in self.pages if page.deferred}
        if config.nav is not None and self.pages:
            config.nav.append({self.config.nav_title: _nest(self.pages)})
        return config

    def _load(self) -> list[Scenario]:
        folders = find_scenarios(self.scenarios_dir)
        if self.config.include:
            folders = [f for f in folders if f.name in self.config.include]
        try:
            # The same checks as `iptables-lens validate` (but the kernel's): a scenario that fails them
            # does not build, and every problem is listed with its place.
            scenarios = [load_checked(f) for f in folders]
        except DumpError as error:
            raise PluginError(f"iptables-lens: {error}") from None
        return scenarios

    def on_files(self, files, config):
        self._tmp = tempfile.TemporaryDirectory(prefix="iptables-lens-pages-")
        with FilesEditor(files, config, self._tmp.name) as editor:
            for page in self.pages:
                with editor.open(page.path, "w") as handle:
                    handle.write(page.markdown)
        hidden = {page.path for page in self.pages if not page.in_nav}
        for file in editor.files:
            # The pages of a big dump are reached from its index page; listing thousands of them in the
            # navigation would repeat the list on every page.
            if file.src_uri in hidden:
                file.inclusion = InclusionLevel.NOT_IN_NAV
        if self.config.examples_dir:
            _write_examples(Path(self.root / self.config.examples_dir), self.pages)
        return editor.files

    def on_post_page(self, output, page, config):
        deferred = self.deferred.get(page.file.src_uri)
        if deferred:
            # One pass over the page, whatever the number of tables it holds.
            with paused_gc():
                output = PLACEHOLDER_PATTERN.sub(lambda m: deferred[m.group(1)](), output)
        return output

    def on_serve(self, server, config, builder):
        server.watch(str(self.scenarios_dir))
        return server

    def on_post_build(self, config):
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()


def _nest(pages: list[GeneratedPage]) -> list:
    """The navigation: one section per scenario, its overview first, then its nodes and flows.

    Titles come from scenario files, and themes print navigation titles as HTML without escaping them,
    so they are escaped here.
    """
    sections: dict[str, list] = {}
    titles: dict[str, str] = {}
    for page in pages:
        if not page.in_nav:
            continue
        sections.setdefault(page.scenario, [])
        title = html.escape(page.title)
        if page.kind == "overview":
            titles[page.scenario] = title
            sections[page.scenario].insert(0, {"Overview": page.path})
        else:
            sections[page.scenario].append({title: page.path})
    return [{titles.get(name, name): entries} for name, entries in sections.items()]


def _write_examples(folder: Path, pages: list[GeneratedPage]) -> None:
    """Write the generated Markdown where the page-example tests find it (atomically, file by file)."""
    for page in pages:
        target = folder / page.path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page.markdown)
        os.replace(tmp, target)
