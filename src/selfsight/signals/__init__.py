"""Sensor signals and time series: (N, channels, length) data, 1-D views and backbones, trained
by the same methods and loop as images. Nothing is imported here, so the torch-free
``signals.names`` can be read by the command line without loading the rest."""
