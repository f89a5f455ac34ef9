"""The bundled train presets (``train/*.yaml``) and sweep files (``sweep/*.yaml``); ``files`` reads and writes such
files, ``overrides`` parses ``key=value`` and resolves a run's values over the levels."""
