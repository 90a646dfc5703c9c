"""The command-line interface: one module per command, wired together in :mod:`.app`."""

__all__: list[str] = []
