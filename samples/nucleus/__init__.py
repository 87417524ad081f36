"""Nucleus sample: Mask R-CNN on cell nuclei in the DSB2018 layout (see :mod:`.nucleus`)."""
