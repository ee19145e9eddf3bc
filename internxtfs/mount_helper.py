"""``mount.internxtfs``: the helper mount(8) runs, so /etc/fstab and .mount units work.

mount(8) calls ``mount.fuse.internxtfs PROFILE MOUNTPOINT -o OPTIONS`` for an fstab line such as

    default  /mnt/internxt  fuse.internxtfs  allow_other,uid=1000,gid=1000,_netdev  0 0

(``mount.fuse3`` does the same for the older ``internxtfs#default  /mnt/internxt  fuse  ...``
form). Options that belong to internxtfs itself may be given in ``-o`` with underscores:
``cache_dir=``, ``cache_size=``, ``upload_concurrency=``, ``dir_cache_ttl=``, ``delete_mode=``,
``flush_timeout=``, ``key_file=``; ``allow_other``, ``uid``, ``gid`` and ``umask`` pass through.
Generic mount options (``rw``, ``_netdev``, ``noauto``, ``x-systemd.*``, ...) are dropped here.
"""

from __future__ import annotations

import sys

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


def translate(argv: list[str]) -> list[str]:
    """mount(8) arguments → ``internxtfs mount`` arguments."""
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
        else:
            positional.append(arg)
        i += 1
    if len(positional) != 2:
        raise SystemExit("usage: mount.internxtfs PROFILE MOUNTPOINT [-o options]")
    source, mountpoint = positional
    profile = source.split("#", 1)[1] if "#" in source else source
    translated = ["mount", mountpoint, "--profile", profile]
    fuse_opts: list[str] = []
    for option in options:
        key, sep, value = option.partition("=")
        if key in _OWN and sep:
            translated += [_OWN[key], value]
        elif key in _FUSE:
            fuse_opts.append(option)
        elif key in _GENERIC or key.startswith(("x-systemd.", "x-", "comment=")):
            continue
        else:
            raise SystemExit(f"mount.internxtfs: unknown option {option!r}")
    if fuse_opts:
        translated += ["-o", ",".join(fuse_opts)]
    return translated


def main() -> int:
    return cli.main(translate(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
