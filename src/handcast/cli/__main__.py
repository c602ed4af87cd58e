"""``python -m handcast.cli``: the same as the ``handcast`` command."""

import sys

from handcast.cli import main

sys.exit(main())
