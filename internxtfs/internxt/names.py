"""How Internxt splits a file name into ``plainName`` + ``type``, and which names it refuses.

Drive stores a file's name as two fields (protocol §5.3, §7.6); the name users see is
``plainName + "." + type`` when ``type`` is not empty. :func:`split_name` follows Node's
``path.extname`` (what the official clients use), so the same name gets the same fields
whichever client created it, with one deliberate difference:

* ``"trailing."``: Node would give plainName ``"trailing"`` and type ``""`` — and the dot would be
  lost on the way back. We keep the whole name as plainName (type ``""``), so
  ``join_name(*split_name(n)) == n`` holds for every name.
"""

from __future__ import annotations

from .errors import InvalidName


def split_name(name: str) -> tuple[str, str]:
    """``(plainName, type)`` of a full file name.

    >>> split_name("a.tar.gz"), split_name(".bashrc"), split_name("noext"), split_name("x.")
    (('a.tar', 'gz'), ('.bashrc', ''), ('noext', ''), ('x.', ''))
    """
    dot = name.rfind(".")
    # No extension without a dot, when the dot opens the name (".bashrc"; Node's rule) or when
    # it ends the name (our rule, see module doc; this also covers "..").
    if dot <= 0 or dot == len(name) - 1:
        return name, ""
    return name[:dot], name[dot + 1 :]


def join_name(plain_name: str, type_: str | None) -> str:
    return f"{plain_name}.{type_}" if type_ else plain_name


def name_problem(name: str, *, folder: bool) -> str | None:
    """Why Internxt (or any POSIX client) cannot hold ``name``, or ``None`` when it can.

    Folders: the server refuses empty or blank names and ``/`` or ``\\`` (400 ``Invalid folder
    name``). Files: the server only refuses an empty name, but ``/`` and NUL cannot be path
    components anywhere, and ``.``/``..`` are not names at all.
    """
    if name in ("", ".", ".."):
        return "empty or reserved name"
    if "/" in name or "\0" in name:
        return "contains '/' or NUL"
    if folder:
        if not name.strip():
            return "blank folder name"
        if "\\" in name:
            return "folder names cannot contain '\\'"
    return None


def check_name(name: str, *, folder: bool) -> None:
    problem = name_problem(name, folder=folder)
    if problem is not None:
        raise InvalidName(f"{name!r}: {problem}")
