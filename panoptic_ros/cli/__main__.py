"""``python -m panoptic_ros.cli COMMAND ...``: the same as the ``panoptic-ros`` console script."""

import sys

from panoptic_ros.cli import main

sys.exit(main())
