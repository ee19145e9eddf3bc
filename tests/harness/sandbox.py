"""Run a command under the seccomp part of the systemd unit's sandbox, without systemd.

These machines have no systemd as PID 1, so ``systemctl start`` cannot show whether the mount
survives the unit's ``SystemCallFilter=``, ``RestrictAddressFamilies=`` and
``MemoryDenyWriteExecute=``. This script loads equivalent seccomp filters with libseccomp (as
systemd does: one filter per feature, the kernel applies the strictest answer), sets
no_new_privs as ``NoNewPrivileges=yes`` does, then execs the command.

Usage: ``python sandbox.py SPEC.json COMMAND...``; SPEC holds ``allow`` (syscall names; any
other call fails with EPERM, as ``SystemCallErrorNumber=EPERM``), ``families`` (socket
address families allowed) and ``mdwe`` (bool). Only the standard library: it runs before the
command's own environment exists.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import sys

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE, SCMP_CMP_EQ, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ = 1, 4, 6, 7
PROT_WRITE, PROT_EXEC = 0x2, 0x4


def act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)
    ]  # fmt: skip
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


class Filter:
    def __init__(self, lib: ctypes.CDLL, default: int) -> None:
        self.lib = lib
        self.ctx = lib.seccomp_init(default)
        if not self.ctx:
            raise OSError("seccomp_init failed")

    def rule(self, action: int, name: str, *cmps: tuple[int, int, int, int]) -> bool:
        number = self.lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return False  # not a call of this architecture
        array = (ArgCmp * max(1, len(cmps)))(*[ArgCmp(*c) for c in cmps])
        rc = self.lib.seccomp_rule_add_array(self.ctx, action, number, len(cmps), array)
        if rc < 0:
            raise OSError(-rc, f"seccomp_rule_add {name}: {os.strerror(-rc)}")
        return True

    def load(self) -> None:
        rc = self.lib.seccomp_load(self.ctx)
        self.lib.seccomp_release(self.ctx)
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")


def apply(spec: dict[str, object]) -> None:
    lib = _lib()
    families = spec.get("families")
    if isinstance(families, list):
        # socket(2) with any other family fails, as RestrictAddressFamilies= makes it.
        sockets = Filter(lib, SCMP_ACT_ALLOW)
        allowed = sorted(int(f) for f in families)
        deny = act_errno(errno.EAFNOSUPPORT)
        for family in range(0, allowed[-1]):
            if family not in allowed:
                sockets.rule(deny, "socket", (0, SCMP_CMP_EQ, family, 0))
        sockets.rule(deny, "socket", (0, SCMP_CMP_GT, allowed[-1], 0))
        sockets.load()

    if spec.get("mdwe"):
        # MemoryDenyWriteExecute=: no mapping both writable and executable, no mprotect to exec.
        memory = Filter(lib, SCMP_ACT_ALLOW)
        deny = act_errno(errno.EPERM)
        both = PROT_WRITE | PROT_EXEC
        memory.rule(deny, "mmap", (2, SCMP_CMP_MASKED_EQ, both, both))
        memory.rule(deny, "mprotect", (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
        memory.rule(deny, "pkey_mprotect", (2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC))
        memory.load()

    # Last: once loaded, it refuses seccomp(2) itself.
    allow = spec["allow"]
    assert isinstance(allow, list)
    calls = Filter(lib, act_errno(errno.EPERM))
    for name in allow:
        calls.rule(SCMP_ACT_ALLOW, str(name))
    calls.load()


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    apply(spec)
    os.execv(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
