"""Run folders: the names and formats of their files (``files``), atomic writes (``atomic``), and the writer a
training run fills (``writer``). Nothing here imports torch."""
