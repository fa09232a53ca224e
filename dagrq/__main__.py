"""``python -m dagrq``: the ``dagrq`` command."""

from .cli import main

main()
