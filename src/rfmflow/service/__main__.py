"""``python -m rfmflow.service serve|keys|db``: the service's commands on their own."""

from rfmflow.service.cli import service_cli

if __name__ == "__main__":
    service_cli()
