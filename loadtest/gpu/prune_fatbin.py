"""Zero the CUDA machine code a GPU will never load, so a shared library compresses to a fraction.

    python -m loadtest.gpu.prune_fatbin IN.so OUT.so --keep 90

ONNX Runtime's CUDA provider library (284 MB) carries each kernel as machine code for six GPU
generations (sm_75 ... sm_120) in its `.nv_fatbin` section. The CUDA driver loads only the entry
built for the device's architecture (or, failing that, PTX to compile; this library has none), so
on a Hopper GPU (sm_90) the other five generations are dead weight. This keeps every byte's offset
and every entry's header, and overwrites the payloads of the entries for other architectures with
zeros: the file stays a valid library of the same size, and xz packs it into 52 MB instead of 185.
The result runs only on the kept architecture; entries already compressed by nvcc are zeroed alike.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.cli import OneLineArgumentParser, fail, settings_flags, settings_from

FATBIN_MAGIC = 0xBA55ED50
SECTION = b".nv_fatbin"
_CONTAINER = struct.Struct("<IHHQ")  # magic, version, header size, size of the entries that follow
_ENTRY = struct.Struct("<HHIQIIHHI")  # kind, ?, header size, payload size, ..., arch (sm_XY as XY)


def section(elf: bytes | bytearray, name: bytes = SECTION) -> tuple[int, int]:
    """(file offset, size) of the named section of a little-endian ELF64 file."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("not a little-endian 64-bit ELF file")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = headers[shstrndx][4]
    for sh_name, _type, _flags, _addr, offset, size in headers:
        end = elf.index(b"\0", strtab_off + sh_name)
        if elf[strtab_off + sh_name : end] == name:
            return offset, size
    raise ValueError(f"no {name.decode()} section")


def prune(blob: bytearray, start: int, size: int, keep: int) -> dict[int, int]:
    """Zero, in place, the payload of every fatbin entry in blob[start:start+size] whose
    architecture is not `keep`; returns payload bytes per architecture seen (kept ones included)."""
    seen: dict[int, int] = {}
    pos, end = start, start + size
    while pos + _CONTAINER.size <= end:
        magic, _version, header, entries = _CONTAINER.unpack_from(blob, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # containers are 8-byte aligned; padding between them is skipped
            continue
        e, stop = pos + header, pos + header + entries
        while e < stop:
            _kind, _u, ehead, payload, _c, _u2, _minor, _major, arch = _ENTRY.unpack_from(blob, e)
            seen[arch] = seen.get(arch, 0) + payload
            if arch != keep:
                blob[e + ehead : e + ehead + payload] = bytes(payload)
            e += ehead + payload
        pos = stop
    return seen


class PruneSettings(BaseSettings):
    """The tool's options (its flags and help are generated from the fields)."""

    model_config = SettingsConfigDict(env_prefix="H2H_PRUNE_", extra="forbid")

    src: Path = Field(description="shared library to read")
    dst: Path = Field(description="pruned copy to write")
    keep: int = Field(default=90, description="architecture to keep, sm_XY as XY (90: Hopper)")


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(prog="loadtest.gpu.prune_fatbin", description=__doc__.splitlines()[0])
    settings_flags(p, PruneSettings, positional=["src", "dst"])
    a = settings_from(PruneSettings, p.parse_args(argv))
    try:
        blob = bytearray(a.src.read_bytes())
        start, size = section(blob)
    except (OSError, ValueError) as exc:
        fail(f"{a.src}: {exc}")
    seen = prune(blob, start, size, a.keep)
    if a.keep not in seen:
        fail(
            f"{a.src} has no sm_{a.keep} code (has {', '.join(f'sm_{k}' for k in sorted(seen))}): nothing would run"
        )
    a.dst.write_bytes(bytes(blob))
    kept = seen[a.keep]
    print(
        f"kept sm_{a.keep} ({kept / 1e6:.1f} MB), zeroed {', '.join(f'sm_{k}' for k in sorted(seen) if k != a.keep)} ({(sum(seen.values()) - kept) / 1e6:.1f} MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
