"""Kafka plumbing every role uses: the connection, publishing, dead letters, record parsing,
the commit-window consumer and the group-less topic reader. Never imports a role."""
