"""The bus entrypoints: FastStream app, subscribers, requester, dead letters, commit window."""
