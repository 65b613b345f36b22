"""Write the pages the site generates from its scenarios, as Markdown, so that pytest runs their examples.

    python -m tests.generated_pages build/generated-docs [mkdocs.yml]

The pages are those the `iptables-lens` plugin adds to the site: the same scenarios, options and function
(`render.site.site_pages`), read from the site's configuration. `nox -s docs` runs this, then
`pytest docs build/generated-docs`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from iptables_lens.render.site import site_pages, write_pages
from iptables_lens.scenario.load import find_scenarios
from mkdocs.config import load_config


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    config = load_config(argv[1] if len(argv) > 1 else "mkdocs.yml")
    options = config.plugins["iptables-lens"].config
    root = Path(config.config_file_path).parent
    folders = find_scenarios(root / options.scenarios, options.include)
    write_pages(site_pages(folders, options.pages_root, config.use_directory_urls, root), out)


if __name__ == "__main__":
    main(sys.argv[1:])
