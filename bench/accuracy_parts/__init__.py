"""bench/accuracy.py's parts: protocols (what is measured), running (how), reporting (the results)."""
