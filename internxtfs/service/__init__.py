"""The parts of a running mount besides the filesystem itself (``mount.Mount`` wires them).

Each part is one task with ``run()`` (started in the mount's nursery with ``nursery.start``)
and ``stop()`` (:class:`part.Part`), and knows only what it is handed:

* ``part.py``: :class:`~part.Part`, the run/stop shape, and :class:`~part.Background`, which
  gives that shape to the filesystem layers' own background tasks (block cache read-ahead,
  uploader, orphan sweeper, rename settling, listing refreshes).
* ``pending.py``: storing what is pending before a stop or for ``internxtfs flush`` (not a task:
  the parts below call it).
* ``status.py``: the ``status`` answer, the systemd STATUS line, and the reporter part that
  announces READY once the mount answers and then keeps STATUS current.
* ``login.py``: the profile's login while mounted: a renewed session is written back, a new
  ``internxtfs login`` (or SIGHUP) is taken up without a remount.
* ``signals.py``: SIGTERM/SIGINT stop the mount (flush, then unmount); SIGHUP re-reads the login.
* ``control_server.py``: the control socket (``internxtfs status | flush | umount``).

Nothing here imports ``fs/`` internals beyond the objects' public methods, and nothing in
``fs/`` imports this package.
"""
