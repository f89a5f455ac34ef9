"""``python -m adalora_scores.cli``, as launchers (torchrun, accelerate launch) run the command line."""

import sys

from adalora_scores.cli import main

sys.exit(main())
