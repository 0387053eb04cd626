"""Changing a workflow safely: estimate (cost bound before work), replay (a finished run again,
from its recorded answers) and eval (golden sets as a CI gate), all on the run's durable record."""
