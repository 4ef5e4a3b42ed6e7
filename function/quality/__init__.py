"""Is the new version better? Comparisons of two model versions on real traffic (a shadow beside the served model,
or two Knative revisions of an A/B split), with intervals, and the rollout decision drawn from them."""
