"""Bundled sample data (installed as ``aiqc.datasets``); read it with :mod:`aiqc.datum`."""
