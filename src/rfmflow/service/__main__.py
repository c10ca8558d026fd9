"""``python -m rfmflow.service import|keys|db``: the service's commands on their own
(``rfmflow serve`` serves the whole product)."""

from rfmflow.service.cli import service_cli

if __name__ == "__main__":
    service_cli()
