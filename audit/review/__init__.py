"""Review: workflow, leases, visibility, the queue and the review screens."""
