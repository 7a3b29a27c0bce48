import json

import pytest
from click.testing import CliRunner

from searcher.cli import main


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_index_search_info_delete(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "felines.txt").write_text("Kittens and cats purr when they are content.")
    (docs / "finance.md").write_text("# Money\n\nInterest rates and bond yields moved today.")
    (docs / "rows.jsonl").write_text('{"id": "r1", "title": "Ships", "text": "Sailing boats cross the harbour."}\n{broken\n')
    index_dir = tmp_path / "idx"

    result = run("index", docs, "--index", index_dir, "--chunk-tokens", "128")
    assert result.exit_code == 0, result.output
    assert "3 documents indexed" in result.output and "1 skipped" in result.output
    assert "rows.jsonl:2: malformed JSON" in result.output

    result = run("search", "pet animal", "--index", index_dir, "-k", "2", "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert len(hits) == 2
    assert {"doc_id", "score", "title", "source", "passage"} <= set(hits[0])
    assert hits[0]["doc_id"] == str(docs / "felines.txt")

    result = run("search", "boats on water", "--index", index_dir, "-k", "1")
    assert result.exit_code == 0 and "1. Ships" in result.output

    result = run("info", "--index", index_dir, "--json")
    info = json.loads(result.output)
    assert (info["documents"], info["model"], info["dimension"], info["chunk_tokens"]) == (3, "all-MiniLM-L6-v2", 384, 128)

    result = run("delete", "r1", "--index", index_dir)
    assert result.exit_code == 0 and "1 of 1 documents removed" in result.output
    assert json.loads(run("info", "--index", index_dir, "--json").output)["documents"] == 2


def test_reindexing_unchanged_files_encodes_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("Some text about rivers.")
    run("index", tmp_path / "a.txt", "--index", tmp_path / "idx")
    result = run("index", tmp_path / "a.txt", "--index", tmp_path / "idx", "--json")
    report = json.loads(result.output)
    assert (report["unchanged"], report["added"], report["chunks"]) == (1, 0, 0)


def test_errors_are_messages_not_tracebacks(tmp_path, other_model):
    result = run("search", "anything", "--index", tmp_path / "missing")
    assert result.exit_code == 1 and "no index in" in result.output and "Traceback" not in result.output

    (tmp_path / "a.txt").write_text("text")
    run("index", tmp_path / "a.txt", "--index", tmp_path / "idx")
    result = run("search", "x", "--index", tmp_path / "idx", "--model", other_model)
    assert result.exit_code == 1 and "was built with model" in result.output

    result = run("index", "--index", tmp_path / "idx")
    assert result.exit_code == 2 and "give files or folders" in result.output


def test_precision_option(tmp_path):
    (tmp_path / "a.txt").write_text("Some text about rivers and the fish that swim in them.")
    (tmp_path / "b.txt").write_text("A recipe for bread with flour, water and yeast.")
    index_dir = tmp_path / "idx"
    result = run("index", tmp_path, "--index", index_dir, "--device", "cpu", "--precision", "exact", "--json")
    assert result.exit_code == 0, result.output
    for precision in ("exact", "fast"):  # vectors of either path search an index built by the other
        result = run("search", "salmon in a stream", "--index", index_dir, "--device", "cpu",
                     "--precision", precision, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)[0]["doc_id"] == str(tmp_path / "a.txt")
    result = run("index", tmp_path, "--index", index_dir, "--precision", "int4")
    assert result.exit_code == 2 and "int4" in result.output


def test_index_type_and_search_params_options(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(5):
        (docs / f"d{i}.txt").write_text(f"Note {i} about boats, harbours and item {i}.")
    index_dir = tmp_path / "idx"
    result = run("index", docs, "--index", index_dir, "--index-type", "hnsw", "--ef-search", "300")
    assert result.exit_code == 0, result.output
    info = json.loads(run("info", "--index", index_dir, "--json").output)
    assert (info["index_type"], info["index_factory"], info["search_params"]) == ("hnsw", "IDMap2,HNSW32", {"ef_search": 300})
    result = run("index", docs, "--index", index_dir, "--index-type", "ivf")
    assert result.exit_code != 0 and "is an index of type hnsw" in result.output
    assert run("index", docs, "--index", index_dir, "--index-type", "bogus").exit_code != 0


# -- API keys and serve's refusal to listen beyond loopback without them ---------------------

def test_keys_add_list_remove(tmp_path):
    from searcher.web.keys import KeyRing

    path = tmp_path / "keys.txt"
    added = CliRunner().invoke(main, ["keys", "add", "--scope", "read", "--file", str(path)])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()  # the key alone on stdout, for scripts; the note on stderr
    assert key.startswith("srch_") and "shown only now" in added.stderr
    assert key not in path.read_text() and KeyRing.from_file(path).check(key) == "read"
    admin = CliRunner().invoke(main, ["keys", "add", "--scope", "admin", "--file", str(path)]).stdout.strip()

    listed = run("keys", "list", "--file", path)
    assert listed.exit_code == 0 and key not in listed.output and admin not in listed.output
    kid = key.split("_")[1]
    assert any(line.split()[:2] == [kid, "read"] for line in listed.output.splitlines())
    assert any(line.split()[1:2] == ["admin"] for line in listed.output.splitlines())

    removed = run("keys", "remove", kid, "--file", path)
    assert removed.exit_code == 0 and f"removed key {kid}" in removed.output
    assert KeyRing.from_file(path).check(key) is None and KeyRing.from_file(path).check(admin) == "admin"
    again = run("keys", "remove", kid, "--file", path)
    assert again.exit_code == 1 and "no key" in again.output
    assert run("keys", "add", "--scope", "write", "--file", path).exit_code == 2
    path.write_text("broken line\n")
    bad = run("keys", "list", "--file", path)
    assert bad.exit_code == 1 and "keys.txt:1" in bad.output and "Traceback" not in bad.output


def test_serve_refuses_to_listen_beyond_loopback_without_keys(tmp_path):
    missing = tmp_path / "no-index"
    for host in ("0.0.0.0", "192.168.1.20", "::", "example.com"):
        result = run("serve", "--index", missing, "--host", host)
        assert result.exit_code == 2, (host, result.output)
        assert "without API keys" in result.output and "--api-keys" in result.output and "--no-auth" in result.output
    # --no-auth says so explicitly: the refusal is passed (then the missing index stops it).
    result = run("serve", "--index", missing, "--host", "0.0.0.0", "--no-auth")
    assert result.exit_code == 1 and "without API keys" not in result.output
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):  # loopback needs no keys
        assert "without API keys" not in run("serve", "--index", missing, "--host", host).output
    keys = tmp_path / "keys.txt"
    keys.write_text("")
    empty = run("serve", "--index", missing, "--host", "0.0.0.0", "--api-keys", keys)
    assert empty.exit_code == 2 and "holds no keys" in empty.output
    both = run("serve", "--index", missing, "--api-keys", keys, "--no-auth")
    assert both.exit_code == 2 and "contradict" in both.output


def test_serve_default_write_limit_matches_the_web_layer():
    from searcher.cli.serving import MAX_WRITE_BYTES
    from searcher.web.server import MAX_WRITE_BYTES as WEB_MAX_WRITE_BYTES

    assert MAX_WRITE_BYTES == WEB_MAX_WRITE_BYTES


def test_serve_config_checks_its_settings_together(tmp_path):
    from searcher.web.launcher import ServeConfig, ServeConfigError

    config = ServeConfig([("notes", str(tmp_path))], facets=["type", " ", "year"], allowed_hosts=["A.example,b.example"])
    assert config.indexes == (("notes", tmp_path),) and config.facets == ("type", "year")
    assert config.allowed_hosts == ("a.example", "b.example")
    for settings, reason in (({"host": "0.0.0.0"}, "without API keys"), ({"replicas": 2}, "give --ray too"),
                             ({"api_keys": tmp_path / "k", "no_auth": True}, "contradict"),
                             ({"follow_links": True}, "give --watch PATH too")):
        with pytest.raises(ServeConfigError, match=reason):
            ServeConfig([("notes", tmp_path)], **settings)
    with pytest.raises(ServeConfigError, match="allowed host") as bad:
        ServeConfig([("notes", tmp_path)], allowed_hosts=["http://x"])
    assert bad.value.option == "--allowed-hosts"


def test_help_names_what_the_readers_read_and_the_default_engine():
    from searcher.readers.formats import READERS
    from searcher.storage.keywords import DEFAULT_KEYWORD_ENGINE

    text = " ".join(run("index", "--help").output.split())
    assert all(suffix in text for suffix in READERS) and ".pdf" in text
    assert f"(default {DEFAULT_KEYWORD_ENGINE};" in text


def test_the_command_line_loads_no_web_server():
    import subprocess
    import sys

    code = ("import sys, searcher.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'waitress', 'werkzeug'}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
