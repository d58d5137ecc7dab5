"""``python -m net2vec.features.synthnet --data DIR --out PATH [--epochs E] [--seed S]``."""

import sys

from net2vec.features.synthnet.training import main

sys.exit(main())
