"""read_tagged: every way a format-tagged JSON file can be wrong is one named error."""

import pytest

from hybrid_jax.data.corpus import CorpusError, read_manifest
from hybrid_jax.errors import UserError
from hybrid_jax.json_files import read_tagged


class MyError(UserError):
    pass


@pytest.mark.parametrize("content, why", [
    (b'{"format": "x/1", "n": 3', "unreadable: Expecting"),
    (b'\xff\xfe{}', "unreadable: 'utf-8' codec"),
    (b'[1, 2]', "a JSON list, not an object"),
    (b'"x/1"', "a JSON str, not an object"),
    (b'{"format": "x/2"}', "format 'x/2', expected 'x/1'"),
    (b'{"n": 3}', "format None, expected 'x/1'"),
])
def test_each_fault_is_named(tmp_path, content, why):
    path = tmp_path / "meta.json"
    path.write_bytes(content)
    with pytest.raises(MyError) as info:
        read_tagged(path, "x/1", MyError, "thing record")
    assert str(info.value).startswith(f"{path}: not a thing record (")
    assert why in str(info.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(MyError, match=r"nope\.json: not a thing record \(unreadable: "):
        read_tagged(tmp_path / "nope.json", "x/1", MyError, "thing record")


def test_a_good_file_comes_back_whole(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text('{"format": "x/1", "n": [1, 2]}')
    assert read_tagged(path, "x/1", MyError, "thing record") == {"format": "x/1", "n": [1, 2]}


def test_a_corpus_manifest_that_is_a_list_is_a_corpus_error(tmp_path):
    # (Before read_tagged this was an AttributeError traceback: list has no .get.)
    (tmp_path / "manifest.json").write_text("[]")
    with pytest.raises(CorpusError, match="not a corpus manifest .a JSON list"):
        read_manifest(tmp_path)
