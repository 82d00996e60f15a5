"""What the built-in plugins build: imported when a cell builds a component, never to list one."""
