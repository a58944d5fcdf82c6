"""What every command shares: where the warehouse is, who may write it, what was done to it.

The bottom layer: settings (paths, destination), the one-writer lock, the
audit log with `redact`, and SQL quoting. It imports nothing else of ours, so
ingestion, monitoring, privacy, serving and the orchestrator can all use it
(import-linter's contracts in pyproject.toml keep it that way).
"""
