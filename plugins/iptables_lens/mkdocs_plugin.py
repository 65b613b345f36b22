"""The `iptables-lens` MkDocs plugin: thin glue between MkDocs events and the core.

Declared in mkdocs.yml as `plugins: [iptables-lens]`. It reads the scenario folders under `scenarios`
(default `dumps/`) when the build starts and fails the build with MkDocs' PluginError, naming the file,
line and column, when a scenario or a dump is bad.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin

from .errors import DumpError
from .scenario import Scenario, find_scenarios, load_scenario


class IptablesLensConfig(base.Config):
    scenarios = c.Type(str, default="dumps")
    """Folder holding one sub-folder per scenario, relative to mkdocs.yml."""
    include = c.ListOfItems(c.Type(str), default=[])
    """Scenario folder names to build; empty means all of them."""


class IptablesLensPlugin(BasePlugin[IptablesLensConfig]):
    def on_config(self, config):
        self.root = Path(config.config_file_path).parent
        self.scenarios_dir = (self.root / self.config.scenarios).resolve()
        if not self.scenarios_dir.is_dir():
            raise PluginError(f"iptables-lens: scenarios folder {self.scenarios_dir} does not exist")
        return config

    def load(self) -> list[Scenario]:
        folders = find_scenarios(self.scenarios_dir)
        if self.config.include:
            folders = [f for f in folders if f.name in self.config.include]
        try:
            scenarios = [load_scenario(f) for f in folders]
            for scenario in scenarios:
                _ = scenario.dumps  # parse now, so a bad dump fails the build with its position
        except DumpError as error:
            raise PluginError(f"iptables-lens: {error}") from None
        return scenarios

    def on_files(self, files, config):
        self.scenarios = self.load()
        return files
