"""The command line: typer commands that parse arguments, call one flow or step, and print."""
