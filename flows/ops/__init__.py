"""Operating Prefect itself: the server command and the client's lifecycle in a process."""
