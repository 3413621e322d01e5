"""Pull requests, reviews, merges and branch protection."""
