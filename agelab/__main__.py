import sys

from agelab.cli import main

sys.exit(main())
