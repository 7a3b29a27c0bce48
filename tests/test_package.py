"""The package as it would be published: an sdist and a wheel built from this checkout with no
download (`python -m build --no-isolation`, the wheel built from the sdist, so a file missing from
the sdist is missing here too), the wheel installed without its dependencies into a folder of its
own, and run from there in another working directory, so neither the checkout nor its editable
install is what gets imported. The dependencies come from the test environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
WHEEL_NAME = re.sub(r"[-_.]+", "_", PROJECT["name"]).lower()  # the wheel's file name part (PEP 427)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                            capture_output=True, text=True, timeout=300, cwd=out)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    wheels = list(out.glob(f"{WHEEL_NAME}-{PROJECT['version']}-py3-none-any.whl"))
    sdists = list(out.glob(f"{WHEEL_NAME}-{PROJECT['version']}.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                             str(target), str(wheels[0])], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"wheel": wheels[0], "log": log, "target": target, "cwd": tmp_path_factory.mktemp("elsewhere")}


def run_installed(built, *args, timeout=180) -> subprocess.CompletedProcess:
    """`args` with the installed copy first on the path (PYTHONPATH replaced, not added to)."""
    env = {**os.environ, "PYTHONPATH": str(built["target"])}
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                            cwd=built["cwd"], env=env)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


def test_the_build_gives_no_setuptools_warning(built):
    """e.g. web/static and web/templates taken for packages missing from `packages`. build
    prints a backend's warning as `WARNING ...`, pip as `...Warning: ...`."""
    warnings = re.findall(r"^.*(?:\bWARNING\b|\w+Warning\b).*$", built["log"], re.MULTILINE)
    assert not warnings, warnings


def test_the_wheel_holds_the_pages_files_and_says_what_it_is(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = f"{WHEEL_NAME}-{PROJECT['version']}.dist-info"
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    for folder in ("templates", "static"):
        for path in (ROOT / "web" / folder).iterdir():
            assert f"searcher/web/ui/{folder}/{path.name}" in names
    assert not any(name.startswith(("web/", "tests/", "benchmarks/", "scripts/")) for name in names)
    assert metadata["Name"] == PROJECT["name"] and metadata["Version"] == PROJECT["version"]
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "searcher = searcher.cli:main" in entry_points


def test_the_installed_copy_runs_its_version_index_search_and_page(built, tmp_path):
    target = built["target"]
    code = "import searcher, searcher.web.ui as ui; print(searcher.__file__); print(ui.__file__)"
    imported = run_installed(built, sys.executable, "-c", code).stdout.split()
    assert all(Path(path).is_relative_to(target) for path in imported), imported

    # the `searcher` command pip made, and `python -m searcher`
    result = run_installed(built, target / "bin" / "searcher", "--version")
    assert PROJECT["version"] in result.stdout, result.stdout
    assert PROJECT["version"] in run_installed(built, sys.executable, "-m", "searcher", "--version").stdout

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cats.txt").write_text("Kittens and cats purr when they are content.")
    (docs / "money.txt").write_text("Interest rates and bond yields moved today.")
    index_dir = tmp_path / "idx"
    result = run_installed(built, sys.executable, "-m", "searcher", "index", docs, "--index", index_dir,
                           "--workers", "0", "--device", "cpu")  # the default model: the installed package's
    assert "2 documents indexed" in result.stdout, result.stdout
    result = run_installed(built, sys.executable, "-m", "searcher", "search", "a pet animal", "--index", index_dir,
                           "-k", "2", "--json", "--device", "cpu")
    hits = json.loads(result.stdout)
    assert [hit["doc_id"] for hit in hits] == [str(docs / "cats.txt"), str(docs / "money.txt")]

    # the page's templates and static files, from the installed copy
    code = ("import sys; from searcher.web import create_app\n"
            "client = create_app(index_dir=sys.argv[1], device='cpu').test_client()\n"
            "for path in ('/', '/?q=kittens', '/static/style.css', '/static/app.js'):\n"
            "    answer = client.get(path)\n"
            "    print(path, answer.status_code, len(answer.data))\n"
            "print('kitten' in client.get('/?q=kittens').get_data(as_text=True).lower())\n")
    lines = run_installed(built, sys.executable, "-c", code, index_dir).stdout.splitlines()
    assert [line.split()[1] for line in lines[:4]] == ["200"] * 4, lines
    assert all(int(line.split()[2]) > 0 for line in lines[:4]) and lines[4] == "True", lines


def test_the_version_option_names_this_distribution():
    """`searcher --version` looks the version up by distribution name: `searcher` is not ours."""
    calls = [(path.relative_to(ROOT), call) for path in sorted((ROOT / "searcher" / "cli").rglob("*.py"))
             for call in re.findall(r"version_option\([^)]*\)", path.read_text())]
    assert calls, "searcher/cli has no click.version_option"
    for where, call in calls:
        assert f'package_name="{PROJECT["name"]}"' in call, \
            f'{where}: {call} should be @click.version_option(package_name="{PROJECT["name"]}")'
