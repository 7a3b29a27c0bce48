"""Encoding on Ray (searcher/cluster/ray_encoder.py) on a local two-node cluster on loopback (the
session's `ray_cluster`): the same index as a local build, with the work on both nodes; an
interrupted run resumes from its last commit; clear errors without Ray or with a bad address."""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.cluster.ray_cluster import RayError, node_addresses, ray_session

TOPICS = {
    "rivers": "Rivers carry rain from the hills to the sea, cutting valleys and carrying silt to their deltas.",
    "bread": "Dough of flour, water and yeast rises for hours before it is shaped and baked in a hot oven.",
    "stars": "A star shines by fusing hydrogen into helium in its core until the fuel runs out.",
    "chess": "Chess players open with the centre pawns, develop knights and bishops, and castle early.",
    "bees": "Honey bees forage for nectar, dance to tell the hive where flowers are and guard the queen.",
    "rails": "Steam locomotives pulled the first trains; electric and diesel engines replaced them later.",
}


def corpus(folder, topics=TOPICS):
    """Short files (TOPICS: six, three to four 32-token chunks each)."""
    folder.mkdir()
    for name, text in topics.items():
        (folder / f"{name}.txt").write_text(f"{text} {text.lower()} {text}")
    return folder


def contents(path) -> tuple[dict, dict]:
    """An index's documents (id -> text) and chunks ((doc, position) -> (start, end, text, vector))."""
    with Index.open(path, load_model=False) as idx:
        store = idx.store
        docs = {d: store.documents([d], with_text=True)[d]["text"] for d in store.document_ids()}
        _, ids, vectors = idx.chunk_vectors()
        rows = store.chunks(ids.tolist())
        chunks = {(rows[i].doc_id, rows[i].position): (rows[i].start, rows[i].end, rows[i].text, v)
                  for i, v in zip(ids.tolist(), vectors)}
    return docs, chunks


def assert_same_index(path, reference):
    docs, chunks = contents(path)
    ref_docs, ref_chunks = contents(reference)
    assert docs == ref_docs
    assert chunks.keys() == ref_chunks.keys() and len(chunks) > len(docs)
    for key, (start, end, text, vector) in chunks.items():
        assert (start, end, text) == ref_chunks[key][:3]
        assert float(np.dot(vector, ref_chunks[key][3])) >= 0.999, key


@pytest.fixture(scope="module")
def local_build(tmp_path_factory, encoder):
    """The corpus indexed without Ray (the reference)."""
    folder = corpus(tmp_path_factory.mktemp("ray") / "docs")
    path = folder.parent / "local"
    with Index.create(path, chunk_tokens=32, overlap=4, device="cpu") as idx:
        idx.add_paths([folder])
    return folder, path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_ray_build_equals_local_build_and_runs_on_both_nodes(ray_cluster, local_build, tmp_path):
    folder, reference = local_build
    result = run("index", folder, "--index", tmp_path / "idx", "--chunk-tokens", 32, "--overlap", 4,
                 "--device", "cpu", "--ray", ray_cluster.address, "--ray-workers", 2, "--ray-batch-size", 4,
                 "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["added"] == len(TOPICS)
    nodes = report["ray"]["nodes"]
    assert len(nodes) == 2 and sum(nodes.values()) == report["chunks"], nodes  # both nodes encoded
    assert_same_index(tmp_path / "idx", reference)

    # A sharded index: --ray encodes for the shard each new document is routed to.
    assert run("shard", tmp_path / "idx", "--shards", 2, "--out", tmp_path / "sharded").exit_code == 0
    new = corpus(tmp_path / "new", {"tides": "The moon pulls the oceans into two bulges, and coasts see two tides a day."})
    result = run("index", new, "--index", tmp_path / "sharded", "--device", "cpu", "--ray", ray_cluster.address,
                 "--ray-workers", 1, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 1
    with Index.create(tmp_path / "new-local", chunk_tokens=32, overlap=4, device="cpu") as idx:
        idx.add_paths([new])
    holding = [f for f in sorted((tmp_path / "sharded").glob("shard-*")) if str(new / "tides.txt") in contents(f)[0]]
    assert len(holding) == 1
    chunks, ref_chunks = contents(holding[0])[1], contents(tmp_path / "new-local")[1]
    for key, (start, end, text, vector) in ref_chunks.items():
        assert chunks[key][:3] == (start, end, text) and float(np.dot(chunks[key][3], vector)) >= 0.999


def test_interrupted_ray_run_resumes_from_its_last_commit(ray_cluster, local_build, tmp_path, encoder):
    """A run stopped in its second commit's encoding keeps the first commit; the next run encodes
    only the rest, and the index ends as a local build's. Also: the nodes are on 127.0.0.1, and
    too many workers or another model on the nodes are clear errors, not a wait."""
    from searcher.cluster.ray_encoder import RayEncoder, ray_encoder

    folder, reference = local_build
    idx = Index.create(tmp_path / "idx", chunk_tokens=32, overlap=4, device="cpu")
    idx.commit_chunks = 8  # a commit every two or three documents
    calls = []

    def stop_in_second_commit(n):
        calls.append(n)
        if len(calls) > 1 and idx.store.count_documents() > 0:
            raise KeyboardInterrupt  # as Ctrl-C would, while the Ray job streams vectors back

    with ray_session(ray_cluster.address) as ray:
        assert node_addresses(ray) == ["127.0.0.1", "127.0.0.1"]  # loopback only
        with pytest.raises(RayError, match="need 5 CPUs"):
            RayEncoder(encoder, workers=5)
        other = copy.copy(encoder)
        other.fingerprint = "0123456789abcdef"  # as if the nodes had another checkpoint than the driver
        with pytest.raises(RayError, match="there is not the index's .*expected 0123456789abcdef"):
            RayEncoder(other, workers=1).encode_ids([encoder.with_special_tokens([2000])])
        with ray_encoder(encoder, ray_cluster.address, workers=1, batch_size=4) as on_ray:
            with pytest.raises(KeyboardInterrupt):
                idx.add_paths([folder], progress=stop_in_second_commit, encoder=on_ray)
            committed = idx.store.count_documents()
            assert 0 < committed < len(TOPICS)
            report = idx.add_paths([folder], encoder=on_ray)
        assert ray.is_initialized()  # ray_encoder kept the connection it found
    assert (report.unchanged, report.added) == (committed, len(TOPICS) - committed)
    idx.close()
    assert_same_index(tmp_path / "idx", reference)


def test_without_ray_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    (tmp_path / "a.txt").write_text("text")
    result = run("index", tmp_path / "a.txt", "--index", tmp_path / "idx", "--ray")
    assert result.exit_code == 1 and "pip install -e '.[ray]'" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "idx").exists()


def test_bad_ray_addresses_are_clear_errors(tmp_path):
    (tmp_path / "a.txt").write_text("text")
    result = run("index", tmp_path / "a.txt", "--index", tmp_path / "idx", "--ray", "127.0.0.1:1")
    assert result.exit_code == 1 and "no Ray at 127.0.0.1:1" in result.output, result.output
    result = run("index", "--ray", tmp_path / "a.txt", tmp_path / "a.txt", "--index", tmp_path / "idx")
    assert result.exit_code != 0 and "put --ray after the paths" in result.output, result.output
    result = run("index", tmp_path / "a.txt", "--index", tmp_path / "idx", "--ray", "no address")
    assert result.exit_code == 1 and "is not a Ray address" in result.output, result.output
    result = run("index", tmp_path / "a.txt", "--index", tmp_path / "idx", "--ray-workers", 2)
    assert result.exit_code == 2 and "need --ray" in result.output
    assert not (tmp_path / "idx").exists()
