"""Built-in plugins: hookimpl modules written exactly as a third-party plugin would write them."""
