from ndpipe.cli import entry

entry()
