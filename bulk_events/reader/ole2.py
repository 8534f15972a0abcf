"""OLE2 compound files (the container of .xls, and of every password-protected Office file).

Only what is needed to tell them apart and to bound the work before python-calamine opens one:
the names and sizes of the streams (:func:`streams`) and the bytes of one stream, block by block
(:func:`read_stream`). Every chain is followed with a step limit, so a looping or truncated file
fails here quickly instead of hanging.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_END_OF_CHAIN = 0xFFFFFFFE
_FREE = 0xFFFFFFFF


class Ole2Error(Exception):
    """The compound file is truncated or inconsistent."""


class _Container:
    def __init__(self, f: BinaryIO, size: int):
        self.f = f
        header = self._read_at(0, 512)
        if header[:8] != MAGIC:
            raise Ole2Error("not an OLE2 file")
        shift = struct.unpack_from("<H", header, 0x1E)[0]
        if shift not in (9, 12):
            raise Ole2Error("bad sector size")
        self.sector = 1 << shift
        self.sectors = max(0, size // self.sector - 1)  # sectors after the header
        self.first_dir = struct.unpack_from("<I", header, 0x30)[0]
        self.mini_cutoff, self.first_minifat = struct.unpack_from("<II", header, 0x38)
        first_difat, n_difat = struct.unpack_from("<II", header, 0x44)
        fat = [s for s in struct.unpack_from("<109I", header, 0x4C) if s < _FREE - 1]
        per_sector = self.sector // 4
        sector = first_difat
        for _ in range(min(n_difat, self.sectors + 1)):
            if sector >= self.sectors:
                break
            entries = struct.unpack(f"<{per_sector}I", self._sector(sector))
            fat += [s for s in entries[:-1] if s < _FREE - 1]
            sector = entries[-1]
        self.fat_sectors = fat

    def _read_at(self, offset: int, length: int) -> bytes:
        self.f.seek(offset)
        data = self.f.read(length)
        if len(data) != length:
            raise Ole2Error("truncated")
        return data

    def _sector(self, number: int) -> bytes:
        if number >= self.sectors:
            raise Ole2Error("sector out of range")
        return self._read_at((number + 1) * self.sector, self.sector)

    def _next(self, number: int) -> int:
        per_sector = self.sector // 4
        index, slot = divmod(number, per_sector)
        if index >= len(self.fat_sectors):
            raise Ole2Error("sector beyond the allocation table")
        where = (self.fat_sectors[index] + 1) * self.sector + slot * 4
        return int(struct.unpack("<I", self._read_at(where, 4))[0])

    def chain(self, start: int) -> Iterator[int]:
        number = start
        for _ in range(self.sectors + 1):
            if number == _END_OF_CHAIN:
                return
            if number >= self.sectors:
                raise Ole2Error("broken sector chain")
            yield number
            number = self._next(number)
        raise Ole2Error("looping sector chain")

    def entries(self) -> Iterator[tuple[str, int, int, int]]:
        """(name, type, first sector, size) of every directory entry."""
        for number in self.chain(self.first_dir):
            block = self._sector(number)
            for at in range(0, self.sector, 128):
                entry = block[at : at + 128]
                length = struct.unpack_from("<H", entry, 64)[0]
                kind = entry[66]
                if kind == 0 or not 2 <= length <= 64:
                    continue
                name = entry[: length - 2].decode("utf-16-le", errors="replace")
                start, size = struct.unpack_from("<IQ", entry, 116)
                yield name, kind, start, size if self.sector == 4096 else size & 0xFFFFFFFF


def streams(path: Path) -> dict[str, int]:
    """Stream name -> declared size of every stream in the compound file (raises Ole2Error)."""
    with path.open("rb") as f:
        container = _Container(f, path.stat().st_size)
        return {name: size for name, kind, _s, size in container.entries() if kind == 2}


def read_stream(path: Path, wanted: str) -> Iterator[bytes]:
    """The bytes of a stream, in blocks (raises Ole2Error); nothing for a missing stream."""
    with path.open("rb") as f:
        container = _Container(f, path.stat().st_size)
        entries = list(container.entries())
        for name, kind, start, size in entries:
            if kind != 2 or name != wanted:
                continue
            if size >= container.mini_cutoff:
                blocks = (container._sector(n) for n in container.chain(start))
                yield from _cut(blocks, size)
                return
            # A small stream lives in 64-byte pieces of the root entry's "mini stream".
            root = next((e for e in entries if e[1] == 5), None)
            if root is None:
                raise Ole2Error("no root entry")
            mini = b"".join(_cut((container._sector(n) for n in container.chain(root[2])), root[3]))
            minifat = b"".join(
                container._sector(n) for n in container.chain(container.first_minifat)
            )
            pieces = []
            number = start
            for _ in range(len(mini) // 64 + 1):
                if number == _END_OF_CHAIN:
                    break
                if number * 64 + 64 > len(mini) or number * 4 + 4 > len(minifat):
                    raise Ole2Error("broken mini stream chain")
                pieces.append(mini[number * 64 : number * 64 + 64])
                number = struct.unpack_from("<I", minifat, number * 4)[0]
            else:
                raise Ole2Error("looping mini stream chain")
            yield b"".join(pieces)[:size]
            return


def _cut(blocks: Iterator[bytes], size: int) -> Iterator[bytes]:
    left = size
    for block in blocks:
        if left <= 0:
            return
        yield block[:left]
        left -= len(block)
