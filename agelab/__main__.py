"""``python -m agelab``: the verbs' entry point (:func:`agelab.cli.main`)."""

import sys

from agelab.cli import main

sys.exit(main())
