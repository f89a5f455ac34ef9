"""``python -m adalora_scores.cli``, as launchers (torchrun, accelerate launch) run the command line."""

from adalora_scores.cli import main

raise SystemExit(main())
