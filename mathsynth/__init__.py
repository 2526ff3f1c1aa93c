"""mathsynth: verified math training data. Core types shared by every stage live here."""

__version__ = "0.1.0"
