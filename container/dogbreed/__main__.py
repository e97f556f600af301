"""``python -m dogbreed COMMAND``: the same commands as the container's entry point."""

import sys

from dogbreed.cli import main

sys.exit(main())
