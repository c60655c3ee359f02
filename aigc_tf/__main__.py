"""``python -m aigc_tf``: the same as the ``aigc-tf`` command."""

import sys

from aigc_tf.cli import main

sys.exit(main())
