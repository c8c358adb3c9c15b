"""hir: Hindsight Instruction Relabeling (Zhang et al., ICML 2023) for Hugging Face models.

Sample answers, score them with a feedback function, relabel each (query, answer) with an
instruction the answer satisfies, and train with supervised learning.
"""

from hir.errors import HIRError
from hir.tasks import Example, Task, list_tasks, load_task

__version__ = "0.1.0"

__all__ = ["Example", "HIRError", "Task", "__version__", "list_tasks", "load_task"]
