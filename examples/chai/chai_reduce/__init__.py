"""CHAI example reduction programs for the CCAT Workflow Manager.

Three step programs (calibration, baseline, gridding) that honor the container
contract, and a generator of synthetic CHAI nights to feed them.
"""

__version__ = "1.0.0"
