"""Command-line helpers that build routemix's bundled assets (demo data, tiny tokenizer)."""
