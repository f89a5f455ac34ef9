"""The bundled train presets (``train/*.yaml``) and sweep files (``sweep/*.yaml``), and the modules that read them:
``files`` (finding, reading and writing preset files) and ``overrides`` (``key=value`` and the resolution of a run's
values over the levels)."""
