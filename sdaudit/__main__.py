"""``python -m sdaudit`` runs the command line, the same as the ``sdaudit`` script."""

from sdaudit.cli.app import main

if __name__ == "__main__":
    main()
