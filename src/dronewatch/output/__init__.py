"""Where records go: JSONL files, the terminal summary."""
