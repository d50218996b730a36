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
