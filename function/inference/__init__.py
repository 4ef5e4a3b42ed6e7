"""Inference: the one prediction service every door calls (`service`), what goes in and comes out of it
(`outcome`), the image decoder shared with the converter (`images`), and images fetched by URL (`image_urls`)."""
