"""The hub's own request ids (onceonly.hub.middleware): random UUIDs, version 4, as hex."""

import uuid

from onceonly.hub.middleware import new_request_id


def test_a_request_id_is_a_random_uuid4_in_hex() -> None:
    ids = [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for request_id in ids:
        parsed = uuid.UUID(hex=request_id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parsed.hex == request_id  # 32 lower-case hex digits, as uuid4().hex
    # every other bit is random: each of the 122 is seen both set and clear
    fixed = (0xC000 << 48) | (0xF000 << 64)
    ones = [int(request_id, 16) for request_id in ids]
    seen_set = seen_clear = 0
    for value in ones:
        seen_set |= value
        seen_clear |= ~value
    random_bits = ((1 << 128) - 1) & ~fixed
    assert seen_set & random_bits == random_bits
    assert seen_clear & random_bits == random_bits
