"""De-duplication: exact (sha256 of the original bytes) and near (pHash Hamming distance).

:class:`PhashIndex` holds the 64-bit hashes of the accepted images in one numpy array and
answers "closest hash within ``threshold``" with one vectorised XOR + popcount (about 10-20 ms per
query per million images; for much larger catalogs shard by source or use a multi-index hash).
"""

from __future__ import annotations

import hashlib

import numpy as np


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def phash_to_int(phash: str) -> int:
    """A 16-hex-digit pHash as an unsigned 64-bit integer."""
    return int(phash, 16) & 0xFFFFFFFFFFFFFFFF


def hamming(a: str, b: str) -> int:
    """Hamming distance of two hex pHashes (bits)."""
    return int(phash_to_int(a) ^ phash_to_int(b)).bit_count()


class PhashIndex:
    """Image ids with their 64-bit pHashes, searchable by Hamming distance."""

    def __init__(self, capacity: int = 1024) -> None:
        self._hashes: np.ndarray = np.zeros(max(1, capacity), np.uint64)
        self._ids: np.ndarray = np.zeros(max(1, capacity), np.int64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, image_id: int, phash: str) -> None:
        if self._n == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
            self._ids = np.concatenate([self._ids, np.zeros_like(self._ids)])
        self._hashes[self._n] = np.uint64(phash_to_int(phash))
        self._ids[self._n] = image_id
        self._n += 1

    def remove(self, image_id: int) -> None:
        keep = self._ids[: self._n] != image_id
        n = int(keep.sum())
        self._hashes[:n] = self._hashes[: self._n][keep]
        self._ids[:n] = self._ids[: self._n][keep]
        self._n = n

    def nearest(self, phash: str, threshold: int) -> tuple[int, int] | None:
        """``(image_id, distance)`` of the closest hash with distance <= ``threshold`` (the
        lowest id among ties), or None."""
        if self._n == 0 or threshold < 0:
            return None
        query = np.uint64(phash_to_int(phash))
        dist = np.bitwise_count(self._hashes[: self._n] ^ query)
        best = int(dist.min())
        if best > threshold:
            return None
        candidates = self._ids[: self._n][dist == best]
        return int(candidates.min()), best
