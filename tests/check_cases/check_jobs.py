"""A module for tests/check_cases/imports.toml (imported by conddsl check --import-funcs).

Importing it registers the custom condition ``data ready``, as a scheduler's modules do.
"""

from conddsl.custom import condition

LIMIT = 10


@condition("data ready")
def data_ready() -> bool:
    """A custom condition."""
    return True


def run() -> None:
    """A task."""
