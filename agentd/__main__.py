"""`python -m agentd` is the `agentd` command."""
from agentd.cli.main import main

raise SystemExit(main())
