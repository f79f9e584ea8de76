"""federated package."""

__all__: list[str] = []
