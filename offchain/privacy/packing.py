"""Many signed values in one Paillier plaintext (layout in docs/protocol.md, "Packed plaintexts").

Slot ``t`` holds ``(v_t + mask_t) mod 2^B`` at bit offset ``t*W``. ``W - B`` headroom bits let
``N <= 2^(W-B)`` plaintexts add without carries between slots (N values below 2^B sum below 2^W);
the low ``B`` bits of a slot of the sum, read as a two's-complement integer, are the exact sum of
the ``v_t`` (masks cancel mod 2^B). One more slot after the ``periods`` values, the check slot,
holds only the mask: in the sum it is zero exactly when the masks cancelled.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


from ..errors import GridshareError


class PackingError(GridshareError, ValueError):
    """A layout that does not fit, or a value outside its slot's range."""


@dataclass(frozen=True)
class SlotLayout:
    periods: int
    slot_bits: int
    slot_width: int
    participants: int

    def __post_init__(self) -> None:
        if not 1 <= self.slot_bits <= 64:
            raise PackingError(f"slot_bits must be in [1, 64], got {self.slot_bits}")
        if self.slot_width < self.slot_bits or not 1 <= self.participants <= 1 << (self.slot_width - self.slot_bits):
            raise PackingError(
                f"{self.participants} participants need more than {self.slot_width - self.slot_bits} headroom bits")

    @classmethod
    def for_round(cls, periods: int, participants: int, key_bits: int, slot_bits: int = 64) -> "SlotLayout":
        """The narrowest layout for ``participants`` that fits a ``key_bits`` Paillier modulus."""
        layout = cls(periods, slot_bits, slot_bits + participants.bit_length(), participants)
        if (periods + 1) * layout.slot_width > key_bits - 8:
            raise PackingError(
                f"{periods} slots and the check slot of {layout.slot_width} bits do not fit a {key_bits}-bit key")
        return layout

    @property
    def max_abs_value(self) -> int:
        """Largest |value| a participant may contribute so that the sum cannot overflow B bits."""
        return ((1 << (self.slot_bits - 1)) - 1) // self.participants

    def pack(self, values: Sequence[int], mask: Sequence[int] | None = None) -> int:
        """Pack ``values`` (signed ints) plus ``mask`` (uniform mod 2^B, ``periods`` + 1 values:
        the check slot's last) into one plaintext."""
        if len(values) != self.periods or (mask is not None and len(mask) != self.periods + 1):
            raise PackingError(f"expected {self.periods} values and {self.periods + 1} mask values")
        modulus, limit = 1 << self.slot_bits, self.max_abs_value
        mask = list(mask) if mask is not None else [0] * (self.periods + 1)
        packed = 0
        for t, v in enumerate([*values, 0]):
            if abs(v) > limit:
                raise PackingError(f"value {v} in slot {t} exceeds the slot range +-{limit}")
            packed |= ((v + mask[t]) % modulus) << (t * self.slot_width)
        return packed

    def slots(self, plaintext: int) -> list[int]:
        """Raw slot contents (W bits each), the check slot last."""
        full = (1 << self.slot_width) - 1
        return [(plaintext >> (t * self.slot_width)) & full for t in range(self.periods + 1)]

    def unpack(self, plaintext: int, mask: Sequence[int] | None = None) -> tuple[list[int], int]:
        """The signed per-slot sums of a plaintext and its check slot (mod 2^B), each less
        ``mask`` (``periods`` + 1 values, mod 2^B)."""
        modulus, half = 1 << self.slot_bits, 1 << (self.slot_bits - 1)
        mask = list(mask) if mask is not None else [0] * (self.periods + 1)
        raw = [(slot - m) % modulus for slot, m in zip(self.slots(plaintext), mask)]
        return [v - modulus if v >= half else v for v in raw[:-1]], raw[-1]

    def unpack_sums(self, plaintext: int, mask: Sequence[int] | None = None) -> list[int]:
        """The signed per-slot sums of a plaintext (less ``mask``)."""
        return self.unpack(plaintext, mask)[0]
