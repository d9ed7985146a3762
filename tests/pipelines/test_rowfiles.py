"""Rows staged to files read back like rows in memory; the staging composite writes every row once."""
import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from regenwatch.pipelines import rowfiles
from regenwatch.pipelines.clustering import ROW_BYTES, build_cluster_table, build_cluster_table_from_files
from regenwatch.pipelines.redelivery import ROW_BYTES as KEY_ROW_BYTES
from regenwatch.pipelines.redelivery import file_index, redelivered_map, redelivered_map_from_files, redelivery_row
from regenwatch.pipelines.pages import Page
from regenwatch.pipelines.rowfiles import RowFiles, RowSource, StageRows


def _random_rows(n, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, width), dtype=np.uint8)


def _write(tmp_path, table, splits):
    paths = []
    for k, (a, b) in enumerate(zip([0] + splits, splits + [len(table)])):
        path = tmp_path / f"part-{k}.rows"
        path.write_bytes(table[a:b].tobytes())
        paths.append(str(path))
    return paths


def test_row_files_read_columns_and_rows_like_memory_across_files_and_chunks(tmp_path, monkeypatch):
    # Tiny chunks: reads cross chunk and file boundaries; one file is empty.
    monkeypatch.setattr(rowfiles, "CHUNK_BYTES", 3 * 20 + 7)
    table = _random_rows(101, 20)
    paths = _write(tmp_path, table, [10, 10, 57])
    memory = RowSource(table.tobytes(), 20)
    with RowFiles(paths, 20) as files:
        assert len(files) == len(memory) == 101
        np.testing.assert_array_equal(files.column(0, 8), memory.column(0, 8))
        np.testing.assert_array_equal(files.column(12, 16), table[:, 12:16])
        picks = np.array([100, 0, 57, 9, 10, 57, 56])
        np.testing.assert_array_equal(files.rows_at(picks), table[picks])
        assert files.rows_at(np.array([], dtype=np.int64)).shape == (0, 20)
        with pytest.raises(IndexError):
            files.rows_at(np.array([101]))


def test_row_files_refuse_a_torn_or_missing_file(tmp_path):
    torn = tmp_path / "torn.rows"
    torn.write_bytes(b"x" * 21)
    with pytest.raises(ValueError, match="whole number"):
        RowFiles([str(torn)], 20)
    with pytest.raises(FileNotFoundError):
        RowFiles([str(tmp_path / "gone.rows")], 20)


def test_stage_rows_writes_every_row_once_and_outputs_the_sorted_file_list(tmp_path):
    rows = [bytes([i % 256]) * 4 + i.to_bytes(4, "little") for i in range(5000)]
    staging = str(tmp_path / "staging")

    def check(outputs):
        assert len(outputs) == 1
        paths = outputs[0]
        assert paths == sorted(paths) and all(p.startswith(staging) and p.endswith(".rows") for p in paths)
        with RowFiles(paths, 8) as files:
            got = sorted(bytes(r) for r in files.rows_at(np.arange(len(files))))
        assert got == sorted(rows)

    with TestPipeline() as p:
        assert_that(p | beam.Create(rows, reshuffle=False) | StageRows(staging, "test", 8), check)


def test_stage_rows_of_nothing_is_an_empty_list_and_a_wrong_size_row_is_an_error(tmp_path):
    with TestPipeline() as p:
        assert_that(p | beam.Create([]) | StageRows(str(tmp_path), "test", 8),
                    lambda outputs: outputs == [[]] or pytest.fail(f"got {outputs}"))
    with pytest.raises(Exception, match="must be 8 bytes"):
        with TestPipeline() as p:
            _ = p | beam.Create([b"short"]) | StageRows(str(tmp_path), "test", 8)


def test_cluster_table_and_redelivery_map_are_the_same_from_files(tmp_path, monkeypatch):
    monkeypatch.setattr(rowfiles, "CHUNK_BYTES", 1000)
    from regenwatch.pipelines.clustering import sketch_row

    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()
    texts = []
    for i in range(300):
        w = list(words)
        w[i % len(w)] = f"town{i % 7}"
        texts.append(" ".join(w) if i % 3 else f"unrelated page {i} " + " ".join(f"w{i}x{j}" for j in range(12)))
    pages = [(f"p{i}", f"{i:064d}", t) for i, t in enumerate(texts)]
    rows = b"".join(sketch_row(*pg) for pg in pages)
    table = np.frombuffer(rows, dtype=np.uint8).reshape(-1, ROW_BYTES)
    paths = _write(tmp_path, table, [33, 200])
    memory, staged = build_cluster_table(rows), build_cluster_table_from_files(paths)
    assert len(memory) > 0
    assert [staged.lookup(p, s) for p, s, _ in pages] == [memory.lookup(p, s) for p, s, _ in pages]
    assert staged.pages == memory.pages == 300

    sources = ["a.jsonl", "b.jsonl"]
    index = file_index(sources)
    key_pages = [Page(id=f"k{i % 40}", content=f"c{i % 40}", source=sources[i % 2], position=i) for i in range(120)]
    key_rows = np.frombuffer(b"".join(redelivery_row(pg, index) for pg in key_pages),
                             dtype=np.uint8).reshape(-1, KEY_ROW_BYTES)
    key_paths = _write(tmp_path / "keys" if (tmp_path / "keys").mkdir() is None else None, key_rows, [50])
    expected = redelivered_map(key_rows.tobytes(), sources)
    assert len(expected) == 80
    assert redelivered_map_from_files(key_paths, sources) == expected
