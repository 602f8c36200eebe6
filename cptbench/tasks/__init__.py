"""Task cards: declarative YAML files (:mod:`.spec` validates one, :mod:`.cards` finds them)."""

from cptbench.tasks.cards import get_task, list_tasks
from cptbench.tasks.spec import MetricSpec, TaskCardError, TaskSpec

__all__ = ["MetricSpec", "TaskCardError", "TaskSpec", "get_task", "list_tasks"]
