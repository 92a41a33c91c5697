"""``python -m failjob_reaper``: the operators' command line (see cli.py)."""

from failjob_reaper.cli import main

raise SystemExit(main())
