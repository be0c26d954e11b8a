"""Role handlers: plain async functions taking their collaborators; no FastStream here."""
