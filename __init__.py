"""mummi: ML-steered multiscale simulation campaigns.

The repository root is this package: ``workflow/`` is ``mummi.workflow``,
``sampler/`` is ``mummi.sampler`` and so on (see ``pyproject.toml``).
"""

__version__ = "0.1.0"
