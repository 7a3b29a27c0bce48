"""The documentation site builds strictly (a broken link or anchor, a page left out of the nav, a
missing snippet fails it), and its CLI reference, generated from the click commands, names every
command and every option: a new option cannot go undocumented."""

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from searcher.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                             "-d", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def commands(group: click.Group, path: tuple[str, ...] = ("searcher",)):
    """Every command under the group, with its path (`searcher keys add`)."""
    for name, command in group.commands.items():
        if command.hidden:
            continue
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def sections(page: str) -> dict[str, str]:
    """The reference page's text under each command's heading, keyed by the heading's id."""
    parts = re.split(r'<h[1-6] id="([^"]+)"', page)
    return {parts[i]: html.unescape(re.sub(r"<[^>]+>", "", parts[i + 1])) for i in range(1, len(parts), 2)}


def test_the_site_builds_strictly_with_every_page(site):
    for page in ["index", "getting-started", "formats", "indexing", "searching", "web", "python-api",
                 "integrations", "serving", "clusters", "cluster", "quality", "operations", "storage", "layout",
                 "cli"]:
        assert (site / page / "index.html").is_file() or page == "index" and (site / "index.html").is_file(), page
    for picture in ["screenshot.png", "about.png", "map.png"]:  # scripts/screenshot.py's, shown on the pages
        assert (site / picture).is_file()
    assert 'src="../screenshot.png"' in (site / "web" / "index.html").read_text()


def test_the_cli_reference_names_every_command_and_option(site):
    by_heading = sections((site / "cli" / "index.html").read_text())
    listed = list(commands(main))
    assert {" ".join(p) for p, _ in listed} >= {"searcher index", "searcher search", "searcher serve",
                                                "searcher keys add"}
    for path, command in listed:
        heading = "-".join(path)
        assert heading in by_heading, f"`{' '.join(path)}` has no section in the CLI reference"
        text = by_heading[heading]
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            for name in [*param.opts, *param.secondary_opts]:
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), \
                    f"`{' '.join(path)} {name}` is not in the CLI reference"


def test_every_option_of_index_is_documented_with_its_help(site):
    text = sections((site / "cli" / "index.html").read_text())["searcher-index"]
    flat = " ".join(text.split())
    for param in main.commands["index"].params:
        if isinstance(param, click.Option) and param.help:
            assert " ".join(param.help.split())[:40] in flat, f"the help of --{param.name} is not in the reference"


def test_the_readme_links_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    linked = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert len(linked) >= 10
    for link in linked:
        assert (ROOT / link).is_file(), f"README links {link}, which does not exist"
