"""Serving a sharded index on Ray Serve (searcher/cluster/ray_serving.py) on the session's two-node
loopback cluster (`ray_cluster`): the same hits as the index opened in process, through the
same HTTP API; a killed replica of two leaves every answer whole; a shard with no live
replica gives a partial answer that names it (HTTP 200), never a 500."""

from __future__ import annotations

import json
import urllib.request

import pytest
from click.testing import CliRunner

import searcher
from searcher import Index
from searcher import open_index
from searcher.cli import main
from searcher.errors import ShardUnavailable
from searcher.cluster.ray_cluster import node_addresses, ray_session
from searcher.cluster.shards import split_index
from searcher.web import create_app
from searcher.web.server import serving

from .test_shards import DOCS, ids

SHARDS = 2
QUERIES = ["planets and stars in space", "baking bread with yeast", "threads and locks", "tomato", "garlic"]


@pytest.fixture(scope="module")
def sharded_dir(tmp_path_factory, encoder):
    """The judged collection of test_shards.py, flat, split into two shards."""
    root = tmp_path_factory.mktemp("serve")
    with Index.create(root / "single", device="cpu", index_type="flat") as idx:
        idx.add_documents(DOCS)
    split_index(root / "single", root / "sharded", SHARDS)
    return root / "sharded"


@pytest.fixture(scope="module")
def local(sharded_dir):
    idx = open_index(sharded_dir, device="cpu")
    yield idx
    idx.close()


@pytest.fixture(scope="module")
def ray(ray_cluster):
    with ray_session(ray_cluster.address) as ray:
        assert node_addresses(ray) == ["127.0.0.1", "127.0.0.1"]
        yield ray
        from ray import serve

        serve.shutdown()


@pytest.fixture(scope="module")
def served(ray, sharded_dir, encoder):
    """Both shards on Ray Serve, two replicas each; a shard that does not answer in 2 s is missing."""
    from searcher.cluster.ray_serving import ServeSettings, serve_sharded

    settings = ServeSettings(replicas=2, num_cpus=0.2, timeout_s=2, app_prefix="test")
    with serve_sharded(sharded_dir, settings, encoder=encoder) as front:
        yield front


def api(url, path, **params):
    query = urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(f"{url}{path}?{query}", timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def replicas(ray, app: str) -> list:
    """The live replica actors of one Serve application (named SERVE_REPLICA::APP#shard#ID)."""
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["name"].startswith(f"SERVE_REPLICA::{app}#")]
    return [ray.get_actor(name, namespace="serve") for name in names]


def test_sharded_serving_on_ray_gives_the_in_process_hits(served, local):
    index = served.index
    assert len(index) == len(local) == len(DOCS)
    for q in QUERIES:
        dense = index.search(q, k=5, mode="dense")
        assert [(h.doc_id, h.score, h.passage) for h in dense] == \
            [(h.doc_id, h.score, h.passage) for h in local.search(q, k=5, mode="dense")]
        assert not dense.partial and dense.missing_shards == ()
        assert ids(index.search(q, k=5, mode="hybrid")) == ids(local.search(q, k=5, mode="hybrid"))
        assert ids(index.search(q, k=5, mode="keyword")) == ids(local.search(q, k=5, mode="keyword"))
    assert ids(index.search("music", k=3, where={"type": "music"})) == \
        ids(local.search("music", k=3, where={"type": "music"}))
    assert ids(index.similar("music-0", k=3)) == ids(local.similar("music-0", k=3))
    assert index.get_document("sport-2") == local.get_document("sport-2")
    with serving(create_app(index)) as url:
        for q in QUERIES[:3]:
            status, answer = api(url, "/api/search", q=q, k=5, mode="hybrid")
            assert status == 200 and "partial" not in answer
            assert [r["doc_id"] for r in answer["results"]] == ids(local.search(q, k=5, mode="hybrid"))
        client = searcher.connect(url)
        assert len(client) == len(DOCS)
        assert ids(client.search("tomato", k=5, mode="dense")) == ids(local.search("tomato", k=5, mode="dense"))


def test_the_command_serves_the_shards_on_ray_and_removes_them_at_the_end(ray, ray_cluster, sharded_dir, local):
    """`searcher serve --ray ADDRESS --index DIR --replicas 1` in its own process, stopped by Ctrl+C;
    its shutdown is bounded: it waits at most UNDEPLOY_TIMEOUT_S for Serve to delete the shards."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from ray import serve

    from searcher.cluster.ray_serving import UNDEPLOY_TIMEOUT_S

    def ours() -> list[str]:
        return [name for name in serve.status().applications if name.startswith("searcher-")]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "searcher", "serve", "--ray", ray_cluster.address, "--index",
                                str(sharded_dir), "--replicas", "1", "--port", "0", "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert "2 shards on Ray Serve, 1 replica each" in line, (line, process.stderr.read() if not line else "")
        url = line.split(" on ")[-1].split("/ (")[0]
        status, answer = api(url, "/api/search", q="tomato", k=5, mode="dense")
        assert status == 200 and [r["doc_id"] for r in answer["results"]] == ids(local.search("tomato", k=5,
                                                                                              mode="dense"))
        assert len(ours()) == 2
    finally:
        process.send_signal(signal.SIGINT)
        # What the wait bounds: the command's whole shutdown, i.e. the shards' deletion (at most
        # UNDEPLOY_TIMEOUT_S, then it stops waiting), closing the server, leaving Ray and exiting,
        # with a generous 60 s for those on a loaded machine. Past it the command is killed.
        try:
            process.wait(UNDEPLOY_TIMEOUT_S + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"serve --ray did not stop within {UNDEPLOY_TIMEOUT_S + 60:g} s of Ctrl+C: "
                        f"{process.stderr.read()[-3000:]}")
    err = process.stderr.read()
    assert process.returncode == 0 and "removing the shards from Ray Serve" in err, (process.returncode, err)
    if "still being deleted" in err:  # the command stopped waiting (and said so): Serve goes on deleting them
        deadline = time.monotonic() + 120
        while ours() and time.monotonic() < deadline:
            time.sleep(0.5)
    assert not ours(), err


def test_the_command_refuses_what_it_cannot_serve(sharded_dir):
    single = sharded_dir.parent / "single"
    for args, message in [(["--replicas", "2"], "give --ray too"),
                          (["--ray", "--replicas", "0"], "0 is not in the range"),
                          (["--ray", "--watch", str(single)], "--watch writes to the index")]:
        result = CliRunner().invoke(main, ["serve", "--index", str(sharded_dir), *args])
        assert result.exit_code == 2 and message in result.output, result.output
    result = CliRunner().invoke(main, ["serve", "--ray", "--index", str(single)])
    assert result.exit_code == 2 and "an index, not a sharded one" in result.output, result.output
    result = CliRunner().invoke(main, ["serve", "--ray", "--index", str(sharded_dir), "--index", f"x={single}"])
    assert result.exit_code == 2 and "one --index" in result.output, result.output


def test_a_killed_replica_of_two_leaves_every_answer_whole(ray, served, local):
    app = served.names[1]
    before = replicas(ray, app)
    assert len(before) == 2
    ray.kill(before[0], no_restart=True)
    for q in QUERIES * 2:  # Serve routes to the other replica (a call that hit the dead one is sent again)
        hits = served.index.search(q, k=5, mode="hybrid")
        assert not hits.partial and ids(hits) == ids(local.search(q, k=5, mode="hybrid"))


def test_a_shard_without_replicas_gives_a_partial_answer_naming_it(ray, served, local):
    """Both replicas of shard-0 killed, with its folder moved away so that the replicas Serve
    starts in their place cannot open it: the shard stays without a live replica."""
    app, name = served.names[0], "shard-0"
    kept = [h.doc_id for h in local.search("tomato", k=len(DOCS), mode="dense")
            if local.shard_of(h.doc_id) != 0][:10]
    server = serving(create_app(served.index))
    url = server.__enter__()
    client = searcher.connect(url)
    folder = served.index.path / name
    folder.rename(folder.with_name("away"))
    for actor in replicas(ray, app):
        ray.kill(actor, no_restart=True)
    hits = served.index.search("tomato", k=10, mode="dense")
    assert hits.partial and hits.missing_shards == (name,)
    assert ids(hits) == kept
    with pytest.raises(ShardUnavailable, match=name):
        served.index.get_document(next(d["id"] for d in DOCS if local.shard_of(d["id"]) == 0))
    try:
        status, answer = api(url, "/api/search", q="tomato", k=5, mode="hybrid")
        assert status == 200 and answer["partial"] is True and answer["missing_shards"] == [name]
        assert answer["results"] and all(local.shard_of(r["doc_id"]) == 1 for r in answer["results"])
        hits = client.search("tomato", k=5)
        assert hits.partial and hits.missing_shards == (name,) and len(hits) == 5
        late = searcher.connect(url)  # a client that connects while the shard is down still reads
        assert late.search("tomato", k=5).missing_shards == (name,)
        status, answer = api(url, "/api/health")
        assert status == 503 and answer["missing_shards"] == [name] and name in answer["message"]
        status, answer = api(url, "/api/documents", id=next(d["id"] for d in DOCS if local.shard_of(d["id"]) == 0))
        assert status == 503 and name in answer["message"]
        page = urllib.request.urlopen(f"{url}/?q=tomato", timeout=30)
        assert page.status == 200 and b"shard-0" in page.read()  # the page says which shard is missing
    finally:
        server.__exit__(None, None, None)
        folder.with_name("away").rename(folder)
