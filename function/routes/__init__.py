"""One module per door. Each handler parses its transport and calls the prediction service."""
