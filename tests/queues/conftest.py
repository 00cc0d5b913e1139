import tests.queues.kinds  # noqa: F401  (registers the test kinds)
