"""Sub-commands of the ``vggedu`` command line, one module each (see ``vggedu/cli.py``)."""
