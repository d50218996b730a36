"""The ``medvl`` command line: thin commands that parse arguments, build typed configs and call the library."""
