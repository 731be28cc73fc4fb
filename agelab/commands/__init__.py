"""The verbs' command lines: argument parsing and printing; the logic lives in the concept modules."""
