"""The `faceverify` command line: main.py builds the parser from every registered command group."""
