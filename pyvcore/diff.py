"""Placeholder: the owner of this subject replaces it."""


def register(subparsers) -> None:  # noqa: ANN001
    pass
