"""An independent RFC 6962 / RFC 9162 reference, written from the RFC text only.

Deliberately naive and recursive, sharing no code with ``onceonly.hub.audit``: MTH, PATH
and PROOF exactly as RFC 6962 §2.1 defines them over the list of leaves, and the
verification algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 step by step.
"""

import hashlib


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def largest_power_of_two_smaller_than(n: int) -> int:
    """RFC 6962 §2.1: k is the largest power of two smaller than n (k < n <= 2k)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1: MTH({}) = SHA-256(); MTH({d0}) = SHA-256(0x00 || d0);
    MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + leaves[0])
    k = largest_power_of_two_smaller_than(n)
    return sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def mth_of_leaf_hashes(hashes: list[bytes]) -> bytes:
    """MTH as above when only the leaf hashes SHA-256(0x00 || d) are known (what a
    public monitor reads): the recursion is the same, the leaf step is given."""
    n = len(hashes)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return hashes[0]
    k = largest_power_of_two_smaller_than(n)
    return sha256(b"\x01" + mth_of_leaf_hashes(hashes[:k]) + mth_of_leaf_hashes(hashes[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1: PATH(m, D[n])."""
    n = len(leaves)
    if n == 1:
        return []
    k = largest_power_of_two_smaller_than(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def proof(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.2: PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    return subproof(m, leaves, True)


def subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = largest_power_of_two_smaller_than(n)
    if m <= k:
        return [*subproof(m, leaves[:k], b), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def _node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash: bytes, inclusion_path: list[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2, steps 1 to 5."""
    if leaf_index >= tree_size:
        return False
    fn, sn = leaf_index, tree_size - 1
    r = leaf_hash
    for p in inclusion_path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            r = _node(r, p)
        fn //= 2
        sn //= 2
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, consistency_path: list[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2, steps 1 to 8 (for 0 < first < second)."""
    if not consistency_path:
        return False
    path_ = list(consistency_path)
    if first & (first - 1) == 0:
        path_ = [first_hash, *path_]
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    fr = sr = path_[0]
    for c in path_[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            sr = _node(sr, c)
        fn //= 2
        sn //= 2
    return fr == first_hash and sr == second_hash and sn == 0
