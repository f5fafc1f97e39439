"""Fault injection against the real processes: the machinery ``bench/faults.py`` and ``tests/faults/`` share.

``lab`` runs one fault on fresh servers and proves the outcome, ``catalog`` holds the faults,
``processes`` runs the roles as supervised processes, ``payloads`` generates bad legacy payloads.
"""
