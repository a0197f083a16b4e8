"""Example applications that use lexyjobs as a library (see host_app/README.md)."""
