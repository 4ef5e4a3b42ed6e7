"""One module per door: what it reads from the request, which service call it makes, what it answers."""
