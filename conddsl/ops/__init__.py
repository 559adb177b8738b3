"""Operating a task file: ``status``, ``history``, ``next FILE`` and ``timeline``.

Each command reads the task file as ``conddsl run`` does and its history through the
``History`` interface only, so any store answers it, served by a scheduler or not.
"""
