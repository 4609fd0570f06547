"""Merkle tree over salted canary commitments (RFC 6962 hashing), with inclusion proofs.

A canary's commitment is ``sha256(salt || canonical canary JSON)``. The registry's root
proves which canaries existed at a time without revealing them; unsealing one canary
means handing over its canonical JSON, its salt and its inclusion proof.
"""

from __future__ import annotations

__all__ = ["commitment", "inclusion_proof", "leaf_hash", "merkle_root", "verify_inclusion"]

import hashlib


def commitment(salt_hex: str, canonical: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(salt_hex) + canonical).hexdigest()


def leaf_hash(commitment_hex: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(commitment_hex)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (RFC 6962, section 2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(_root(leaves[:k]), _root(leaves[k:]))


def merkle_root(commitments: list[str]) -> str:
    if not commitments:
        return hashlib.sha256(b"").hexdigest()
    return _root([leaf_hash(c) for c in commitments]).hex()


def _path(index: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return _path(index, leaves[:k]) + [_root(leaves[k:])]
    return _path(index - k, leaves[k:]) + [_root(leaves[:k])]


def inclusion_proof(commitments: list[str], index: int) -> list[str]:
    """The audit path of leaf ``index``: sibling hashes from the leaf up to the root."""
    if not 0 <= index < len(commitments):
        raise IndexError(f"leaf {index} out of range for {len(commitments)} leaves")
    return [h.hex() for h in _path(index, [leaf_hash(c) for c in commitments])]


def verify_inclusion(
    commitment_hex: str, index: int, size: int, proof: list[str], root: str
) -> bool:
    """RFC 9162 section 2.1.3.2: recompute the root from a leaf and its audit path."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(commitment_hex)
    for p_hex in proof:
        p = bytes.fromhex(p_hex)
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r.hex() == root
