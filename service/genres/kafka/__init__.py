"""Kafka plumbing every role uses: the bus entry each consuming role plugs into, the
connection, publishing, dead letters, record parsing and the group-less topic reader. Never
imports a role."""
