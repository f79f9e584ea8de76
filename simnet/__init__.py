"""simnet package."""

__all__: list[str] = []
