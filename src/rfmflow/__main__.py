"""``python -m rfmflow``: the ``rfmflow`` command."""

from rfmflow.cli.main import main

if __name__ == "__main__":
    main()
