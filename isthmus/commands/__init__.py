"""Sub-commands of the ``isthmus`` command; each module exposes ``register(subparsers)``."""
