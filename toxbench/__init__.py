"""toxbench: one protocol for measuring toxicity interventions on causal LMs.

The implementation lives in the mapped sub-packages ``toxbench.harness``,
``toxbench.interventions`` and ``toxbench.tasks``.
"""

__version__ = "0.1.0"
