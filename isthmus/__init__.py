"""The isthmus command tree (isthmus.cli) and the local runner behind isthmus demo."""
