"""``python -m net2vec.data.synthetic --out DIR --images N --seed S``."""

import sys

from net2vec.data.synthetic.write import main

sys.exit(main())
