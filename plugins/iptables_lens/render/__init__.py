"""Renderers shared by the site and the command line: Markdown, Mermaid and plain text."""
