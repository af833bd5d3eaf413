"""loadtest.gpu.prune_fatbin: in a fatbin section, only the payloads of other architectures are
zeroed (headers, offsets, sizes and the kept code untouched), on a small ELF file built here."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from loadtest.gpu import prune_fatbin


def _entry(arch: int, payload: bytes) -> bytes:
    head = struct.pack("<HHIQIIHHI", 2, 0x101, 64, len(payload), 0, 0, arch % 10, arch // 10, arch)
    return head + bytes(64 - len(head)) + payload


def _container(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


def _elf(section_data: bytes) -> bytes:
    """A little-endian ELF64 with a null section, .nv_fatbin and the section-name table."""
    names = b"\0.nv_fatbin\0.shstrtab\0"
    data_off = 64
    names_off = data_off + len(section_data)
    shoff = (names_off + len(names) + 7) // 8 * 8
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2)
    sections = bytes(64)
    sections += struct.pack("<IIQQQQIIQQ", 1, 1, 2, 0, data_off, len(section_data), 0, 0, 8, 0)
    sections += struct.pack("<IIQQQQIIQQ", 11, 3, 0, 0, names_off, len(names), 0, 0, 1, 0)
    body = header + section_data + names
    return body + bytes(shoff - len(body)) + sections


def test_other_architectures_are_zeroed_in_place(tmp_path: Path):
    pf = prune_fatbin
    sm90, sm80, sm120 = b"\x90" * 24, b"\x80" * 40, b"\x12" * 16
    data = _container(_entry(80, sm80), _entry(90, sm90)) + bytes(8) + _container(_entry(120, sm120))
    elf = _elf(data)
    start, size = pf.section(elf)
    assert elf[start : start + size] == data
    blob = bytearray(elf)
    assert pf.prune(blob, start, size, keep=90) == {80: 40, 90: 24, 120: 16}
    assert (
        len(blob) == len(elf) and blob[:start] == elf[:start] and blob[start + size :] == elf[start + size :]
    )
    pruned = bytes(blob[start : start + size])
    assert pruned.count(sm90) == 1 and sm80 not in pruned and sm120 not in pruned
    assert pruned.replace(b"\0", b"") == data.replace(sm80, b"").replace(sm120, b"").replace(b"\0", b"")


def test_command_refuses_what_would_not_run(tmp_path: Path):
    src = tmp_path / "lib.so"
    src.write_bytes(_elf(_container(_entry(80, b"\x80" * 8))))
    cmd = [sys.executable, "-m", "loadtest.gpu.prune_fatbin", str(src), str(tmp_path / "out.so")]
    r = subprocess.run([*cmd, "--keep", "90"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "has no sm_90 code (has sm_80)" in r.stderr
    r = subprocess.run([*cmd, "--keep", "80"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and (tmp_path / "out.so").read_bytes() == src.read_bytes()
    src.write_bytes(b"not an elf")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a little-endian 64-bit ELF file" in r.stderr
