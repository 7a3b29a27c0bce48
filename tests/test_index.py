import json

import pytest

from searcher import (Index, IndexExistsError, IndexLockedError, IndexNotFoundError,
                      ModelMismatchError)
from searcher.storage.folder import exclusive_lock as _exclusive_lock

from .conftest import ANIMALS


def test_query_with_no_shared_words_finds_the_right_document(animals_index):
    # None of these words occur in the cat document ("Small felines such as kittens chase mice...").
    hits = animals_index.search("pet kitty", k=3)
    assert hits[0].doc_id == "cat"
    assert hits[0].score > hits[1].score
    hits = animals_index.search("vehicle motor fuel", k=1)
    assert [h.doc_id for h in hits] == ["car"]


def test_hits_carry_document_fields_and_passage_offsets(animals_index):
    [hit] = animals_index.search("ocean", k=1)
    doc = animals_index.get_document(hit.doc_id)
    assert (hit.doc_id, hit.title) == ("sea", "Oceans")
    assert doc["text"][hit.start:hit.end] == hit.passage
    assert -1.0 <= hit.score <= 1.0


def test_long_document_is_chunked_and_grouped(index):
    filler = " ".join(f"Paragraph {i} talks about rivers, hills and weather." for i in range(200))
    index.add_documents([
        {"id": "long", "title": "", "text": filler + " The violin concerto was played by the orchestra."},
        {"id": "short", "text": "Tax forms are due in April."},
    ])
    assert index.store.count_chunks() > 5
    hits = index.search("classical music performance", k=5)
    assert [h.doc_id for h in hits] == ["long", "short"]  # one hit per document, even with many chunks
    assert "violin" in hits[0].passage


def test_paging_with_offset(fake_animals_index):
    everything = [h.doc_id for h in fake_animals_index.search("things", k=5)]
    assert len(everything) == 5
    assert [h.doc_id for h in fake_animals_index.search("things", k=2, offset=2)] == everything[2:4]


def test_reopen_gives_same_results(tmp_path, fake_animals_index):
    animals_index = fake_animals_index
    before = [(h.doc_id, round(h.score, 5)) for h in animals_index.search("baking bread", k=5)]
    animals_index.close()
    reopened = Index.open(animals_index.path, encoder=animals_index.encoder)
    assert len(reopened) == len(ANIMALS)
    assert [(h.doc_id, round(h.score, 5)) for h in reopened.search("baking bread", k=5)] == before


def test_same_id_replaces_and_same_content_is_not_reencoded(animals_index):
    before = animals_index.search("pet kitty", k=1, mode="dense")[0]
    report = animals_index.add_documents(ANIMALS)
    assert (report.unchanged, report.added, report.chunks) == (len(ANIMALS), 0, 0)
    report = animals_index.add_documents([{"id": "cat", "title": "Taxes", "text": "Tax returns and accountants."}])
    assert (report.updated, report.added) == (1, 0)
    assert len(animals_index) == len(ANIMALS)
    cat = next(h for h in animals_index.search("pet kitty", k=5, mode="dense") if h.doc_id == "cat")
    assert cat.passage == "Tax returns and accountants." and cat.score < before.score - 0.2
    assert animals_index.search("income tax paperwork", k=1, mode="dense")[0].passage == "Tax returns and accountants."
    assert len(animals_index.vectors) == animals_index.store.count_chunks()


def test_delete_removes_from_vectors_and_database(fake_animals_index):
    animals_index = fake_animals_index
    assert animals_index.delete(["cat", "nope"]) == 1
    assert "cat" not in [h.doc_id for h in animals_index.search("pet kitty", k=10)]
    assert animals_index.get_document("cat") is None
    assert len(animals_index.vectors) == animals_index.store.count_chunks() == len(ANIMALS) - 1


def test_duplicate_ids_and_bad_documents_in_one_run_are_reported(fake_index):
    index = fake_index
    report = index.add_documents([
        {"id": "x", "text": "first"}, {"id": "x", "text": "second"}, {"text": "no id"}, {"id": "y", "text": " \n "},
    ])
    assert report.added == 1 and len(report.skipped) == 3
    assert index.get_document("x")["text"] == "first"
    assert any("duplicate id" in s.reason for s in report.skipped)


def test_add_paths_indexes_files(index, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Gardening\n\nTomatoes need sun and water.")
    (folder / "b.bin").write_bytes(b"\x00\x01")
    report = index.add_paths([folder])
    assert report.added == 1 and len(report.skipped) == 1
    assert index.search("growing vegetables", k=1)[0].title == "Gardening"


def test_manifest_records_settings(tmp_path, encoder):
    Index.create(tmp_path / "i", chunk_tokens=128, overlap=16, device="cpu").close()
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    assert manifest["chunk_tokens"] == 128 and manifest["overlap"] == 16
    assert manifest["model"] == "all-MiniLM-L6-v2" and manifest["dimension"] == 384
    assert manifest["pooling"] == "mean" and manifest["format_version"] == 1


def test_model_mismatch_is_a_clear_error(animals_index, other_model):
    with pytest.raises(ModelMismatchError, match="was built with model all-MiniLM-L6-v2"):
        Index.open(animals_index.path, model=other_model)


def test_index_built_with_other_model_reopens_with_it(tmp_path, other_model):
    idx = Index.create(tmp_path / "tiny", model=other_model, pooling="cls", device="cpu")
    idx.add_documents([{"id": "1", "text": "hello"}])
    idx.close()
    again = Index.open(tmp_path / "tiny")
    assert again.encoder.dimension == 32 and again.search("hello", k=1)[0].doc_id == "1"
    with pytest.raises(ModelMismatchError):
        Index.open(tmp_path / "tiny", model="all-MiniLM-L6-v2")


def test_create_twice_and_open_missing(tmp_path, fake_index):
    index = fake_index
    with pytest.raises(IndexExistsError):
        Index.create(index.path)
    assert Index.create(index.path, exist_ok=True, encoder=index.encoder).path == index.path
    with pytest.raises(IndexNotFoundError):
        Index.open(tmp_path / "nowhere")


def test_second_writer_is_refused(fake_animals_index):
    animals_index = fake_animals_index
    with _exclusive_lock(animals_index.path):  # as if another process were indexing
        with pytest.raises(IndexLockedError):
            animals_index.add_documents([{"id": "new", "text": "something"}])
    assert animals_index.get_document("new") is None


def test_empty_query_is_refused(fake_animals_index):
    with pytest.raises(ValueError):
        fake_animals_index.search("   ")


def test_searches_see_the_last_commit_while_a_replacement_commits(tmp_path, fake_encoder, monkeypatch):
    """Removals go to a copy of the vectors: a search during the commit still finds the old version."""
    import threading

    from searcher.storage.vectors.faiss_backend import FaissVectorIndex

    index = Index.create(tmp_path / "idx", encoder=fake_encoder)
    index.add_documents(ANIMALS)
    entered, release = threading.Event(), threading.Event()
    real = FaissVectorIndex.prepare_commit

    def slow(self, manifest):
        entered.set()
        assert release.wait(30)
        return real(self, manifest)

    monkeypatch.setattr(FaissVectorIndex, "prepare_commit", slow)
    writer = threading.Thread(target=index.add_documents,
                              args=([{"id": "cat", "title": "Cats", "text": "Completely different words now."}],))
    writer.start()
    try:
        assert entered.wait(30)
        hits = index.search("Small felines such as kittens chase mice", k=3, mode="dense")
        assert "cat" in [h.doc_id for h in hits]  # the committed version, not a gap
    finally:
        release.set()
        writer.join(30)
    assert "Completely" in index.get_document("cat")["text"]
    index.close()


def test_search_params_set_in_process_survive_a_commit(tmp_path, fake_encoder):
    index = Index.create(tmp_path / "idx", encoder=fake_encoder, index_type="hnsw")
    index.set_search_params(ef_search=16)
    index.add_documents(ANIMALS)
    assert index.vectors.search_params() == {"ef_search": 16}
    index.close()


def test_open_or_create_and_reopen_keep_what_they_were_given(tmp_path, fake_encoder):
    path = tmp_path / "idx"
    Index.open_or_create(path, encoder=fake_encoder, keyword_engine="tantivy").close()
    with Index.open_or_create(path, encoder=fake_encoder) as index:  # opens: the fake, not a model by name
        assert index.keywords.name == "tantivy" and index.encoder is fake_encoder
    bare = Index.open(path, load_model=False)
    again = bare.reopen()
    assert again.encoder is None and len(again) == 0
    bare.close()
    again.close()


def test_a_finished_threads_connection_is_not_kept(tmp_path, fake_encoder):
    """Servers' worker threads come and go: their read connections must not pile up."""
    import threading

    index = Index.create(tmp_path / "idx", encoder=fake_encoder)
    index.add_documents(ANIMALS)
    for _ in range(5):
        threads = [threading.Thread(target=index.search, args=("kittens",), kwargs={"mode": "keyword"})
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert index.search("kittens", k=1, mode="keyword")[0].doc_id == "cat"
    # The writer's, this thread's and the last burst's (closed when new threads come): not all 20.
    assert len(index.live._stores) <= 2 + 4
    index.close()
