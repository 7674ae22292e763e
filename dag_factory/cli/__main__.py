"""`python -m dag_factory.cli` is `dag-factory`."""

import sys

from dag_factory.cli import main

sys.exit(main())
