"""Content keys (``executor.digests``): the same bytes, the same key; any other, another."""

from __future__ import annotations

import pytest

from picklepool.executor import digests


@pytest.fixture(params=["blake2b", "sha256"])
def large_hash(request, monkeypatch):
    """Large data hashed either way, whatever this CPU has."""
    if request.param == "sha256":
        import hashlib

        monkeypatch.setattr(digests, "_sha256", hashlib.sha256)
    else:
        monkeypatch.setattr(digests, "_sha256", False)
    return request.param


@pytest.mark.parametrize("size", [0, 100, digests.LARGE - 1, digests.LARGE, 3 * digests.LARGE])
def test_a_key_depends_on_every_byte_and_on_the_suffix(large_hash, size):
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    key = digests.content_key(data, b"()")
    assert len(key) == 32 and int(key, 16) >= 0
    assert digests.content_key(bytes(data), b"()") == key  # the same bytes in another object
    assert digests.content_key(data, b"(1,)") != key
    if size:
        changed = bytearray(data)
        changed[size // 2] ^= 1
        assert digests.content_key(bytes(changed), b"()") != key


def test_a_key_is_of_the_joined_bytes():
    # the suffix is hashed after the data, not apart from it: as the key of data + suffix
    assert digests.content_key(b"ab", b"c") == digests.content_key(b"abc")


def test_the_cpu_check_answers():
    assert digests.has_sha_instructions() in (True, False)
