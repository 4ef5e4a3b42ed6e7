"""The wire formats, with no web framework: CloudEvents (`cloudevents`), the Open Inference Protocol's tensors
(`oip`), and the msgspec shapes the doors answer with (`wire`)."""
