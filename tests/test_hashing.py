"""Content and config hashes: stable, sensitive to what they cover, equal for equal content."""

from medvl.hashing import bytes_hash, config_hash, content_hash


def test_content_hash_of_files_and_folders(tmp_path):
    a, b = tmp_path / "d" / "a.bin", tmp_path / "d" / "b.bin"
    a.parent.mkdir()
    a.write_bytes(b"x" * 3_000_000)  # spans several read chunks
    b.write_bytes(b"y")
    folder = content_hash(a.parent)
    copy = tmp_path / "copy.bin"
    copy.write_bytes(a.read_bytes())
    assert content_hash(a) == content_hash(copy) and len(content_hash(a)) == 40
    b.write_bytes(b"z")
    changed = content_hash(a.parent)
    assert changed != folder
    b.rename(b.with_name("c.bin"))  # names are part of a folder's hash
    assert content_hash(a.parent) != changed


def test_config_hash_ignores_key_order_and_bytes_hash_is_blake2b():
    import hashlib

    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1}) != config_hash({"a": 2})
    assert len(config_hash({})) == 24
    assert bytes_hash(b"abc") == hashlib.blake2b(b"abc", digest_size=16).hexdigest()


def test_memo_content_hash_checks_the_stat_before_rehashing(tmp_path, monkeypatch):
    import os

    import medvl.hashing as hashing

    f = tmp_path / "slide.bin"
    f.write_bytes(b"a" * 4096)
    memo = tmp_path / "cache" / "fingerprints.json"
    calls = []
    real = hashing.content_hash
    monkeypatch.setattr(hashing, "content_hash", lambda p: calls.append(p) or real(p))
    first = hashing.memo_content_hash(f, memo)
    assert first == real(f) and len(calls) == 1
    hashing._MEMO.clear()  # a new process: the memo file answers, the file is not read again
    assert hashing.memo_content_hash(f, memo) == first and len(calls) == 1
    f.write_bytes(b"b" * 4096)  # same size, other bytes, new mtime: rehashed
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    second = hashing.memo_content_hash(f, memo)
    assert second != first and second == real(f) and len(calls) == 2
