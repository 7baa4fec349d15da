"""One module per panel; each ``render()`` builds its components and returns them in a namespace."""
