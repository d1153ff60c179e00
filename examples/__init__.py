"""Examples: the CHAI reduction programs (own distribution) and the end-to-end demo."""
