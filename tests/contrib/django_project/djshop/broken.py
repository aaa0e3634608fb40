"""A module that fails to import: a job naming a task in it must fail, the worker go on."""

raise RuntimeError("this module is broken on purpose")
