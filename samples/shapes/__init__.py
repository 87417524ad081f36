"""The synthetic shapes sample (squares, circles and triangles on a plain background).

See :mod:`samples.shapes.shapes` for the config, the dataset and the command line.
"""
