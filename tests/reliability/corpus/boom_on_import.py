"""A module that raises while it is imported (a broken task module)."""

raise RuntimeError("the database driver is not installed")
