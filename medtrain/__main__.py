"""`python -m medtrain` == the `medtrain` console script."""

import sys

from medtrain.cli import main

sys.exit(main())
