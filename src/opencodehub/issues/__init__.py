"""Issues, comments, labels and milestones (pull requests are issues too)."""
