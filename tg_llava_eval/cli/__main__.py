"""``python -m tg_llava_eval.cli``: the same as the ``tg-llava-eval`` console script."""

import sys

from . import main

sys.exit(main())
