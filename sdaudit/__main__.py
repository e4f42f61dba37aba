"""``python -m sdaudit`` runs the command line, the same as the ``sdaudit`` script."""

from sdaudit.cli.app import main

main()
