"""``python -m lumera_p2p``: the same as the ``lumera-p2p`` command."""

from lumera_p2p.cli import main

main()
