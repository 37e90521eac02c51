"""Event terminology: terms normalised, MedDRA loaded from the user's files, levels to count at.

- ``normalise``: the normal form of a term's text and its display label (no dictionary needed);
- ``meddra``: reading and checking a MedDRA ASCII release (its file formats are written there);
- ``dictionary``: one version's dictionary: reactions resolved to PTs, PTs to level terms;
- ``events``: the mapping step of counting (a report's reactions to a scope's terms);
- ``store``: releases and labels in the store; ``unmapped``: the terms no entry resolves;
- ``cli``: ``pvsignal meddra load|versions`` and ``pvsignal terms unmapped``.
"""
