"""``python -m rfmflow.fake_telegram``: serve the fake Bot API until interrupted."""

import sys

from rfmflow.fake_telegram.process import main

sys.exit(main())
