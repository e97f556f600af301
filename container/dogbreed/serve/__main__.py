"""``python -m dogbreed.serve``: what ``docker run IMAGE serve`` runs."""

import sys

from dogbreed.serve.server import main

sys.exit(main())
