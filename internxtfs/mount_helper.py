"""``mount.internxtfs``: the helper mount(8) runs, so /etc/fstab and .mount units work.

For an fstab line such as

    pluton  /mnt/internxt  fuse.internxtfs  _netdev,allow_other,config_dir=/etc/internxtfs  0 0

mount(8) runs ``/sbin/mount.fuse.internxtfs`` if that link exists; otherwise it runs
``mount.fuse3``, which runs ``internxtfs pluton /mnt/internxt -o OPTIONS`` from ``$PATH``: the
``internxtfs`` command takes that form too and hands it here, so no link in ``/sbin`` is needed.
The older form ``internxtfs#pluton  /mnt/internxt  fuse  ...`` ends in the same call.

Options that belong to internxtfs itself are given in ``-o`` with underscores: ``config_dir=``
(mount(8) may run this without ``$HOME``: where the profile is), ``cache_dir=``, ``cache_size=``,
``upload_concurrency=``, ``upload_delay=``, ``dir_cache_ttl=``, ``delete_mode=``,
``flush_timeout=``, ``fsync=``, ``fsync_offline=``, ``links=``, ``key_file=``; ``allow_other``,
``uid``, ``gid`` and ``umask`` pass through. Generic mount options (``rw``, ``_netdev``, ``noauto``,
``x-systemd.*``, ...) are dropped here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from internxtfs import cli

_OWN = {
    "cache_dir": "--cache-dir",
    "cache_size": "--cache-size",
    "upload_concurrency": "--upload-concurrency",
    "upload_delay": "--upload-delay",
    "dir_cache_ttl": "--dir-cache-ttl",
    "replica_window": "--replica-window",
    "delete_mode": "--delete-mode",
    "flush_timeout": "--flush-timeout",
    "key_file": "--key-file",
    "fsync": "--fsync",
    "fsync_offline": "--fsync-offline",
    "links": "--links",
}
_FUSE = {"allow_other", "uid", "gid", "umask"}
_GENERIC = {
    "rw",
    "ro",
    "defaults",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "_netdev",
    "nofail",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "relatime",
    "noatime",
}


@dataclass
class Invocation:
    argv: list[str]  # for ``internxtfs``
    config_dir: str | None = None  # becomes $INTERNXTFS_CONFIG_DIR


def translate(argv: list[str]) -> list[str]:
    """mount(8) arguments → ``internxtfs mount`` arguments."""
    return parse(argv).argv


def parse(argv: list[str]) -> Invocation:
    """mount(8) arguments → ``internxtfs mount`` arguments and the profile's config root."""
    positional: list[str] = []
    options: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-o" and i + 1 < len(argv):
            options.extend(o for o in argv[i + 1].split(",") if o)
            i += 2
            continue
        if arg.startswith("-o") and len(arg) > 2:
            options.extend(o for o in arg[2:].split(",") if o)
        elif arg in ("-n", "-s", "-v", "-f"):  # mount(8)'s own flags: nothing to do here
            pass
        elif arg in ("-t", "-N") and i + 1 < len(argv):  # the type (we know it), a namespace
            i += 2
            continue
        else:
            positional.append(arg)
        i += 1
    if len(positional) != 2:
        raise SystemExit("usage: mount.internxtfs PROFILE MOUNTPOINT [-o options]")
    source, mountpoint = positional
    profile = source.split("#", 1)[1] if "#" in source else source
    translated = ["mount", mountpoint, "--profile", profile]
    fuse_opts: list[str] = []
    config_dir = None
    for option in options:
        key, sep, value = option.partition("=")
        if key == "config_dir" and sep:
            config_dir = value
        elif key in _OWN and sep:
            translated += [_OWN[key], value]
        elif key in _FUSE:
            fuse_opts.append(option)
        elif key in _GENERIC or key.startswith(("x-systemd.", "x-", "comment=")):
            continue
        else:
            raise SystemExit(f"mount.internxtfs: unknown option {option!r}")
    if fuse_opts:
        translated += ["-o", ",".join(fuse_opts)]
    return Invocation(translated, config_dir)


def run(argv: list[str]) -> int:
    invocation = parse(argv)
    if invocation.config_dir:
        os.environ["INTERNXTFS_CONFIG_DIR"] = invocation.config_dir  # the daemon inherits it
    return cli.main(invocation.argv)


def main() -> int:
    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
