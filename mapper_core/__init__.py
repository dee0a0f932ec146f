"""mapper-core: move trained weights from one model layout into another, declaratively.

rules → plan → convert / apply. Import the pieces from their modules; this package
imports nothing heavy (no torch) at import time.
"""
__version__ = "0.1.0"
