"""Example applications of :mod:`mrcnn`, each a ``Config`` + ``Dataset`` subclass + a command line.

Run them from the repository root, e.g. ``python -m samples.shapes.shapes --help``.
"""
