"""Plugins: the generic registry that scores, tasks and distributed backends are kept in (``registry``), and the
loading of a user's files and modules that register into them (``loading``)."""
