"""``python -m dogbreed.train``: what ``docker run IMAGE train`` runs."""

import sys

from dogbreed.train.main import main

sys.exit(main())
