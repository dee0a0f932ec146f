"""An example outside plugin for mapper-core (used by the tests)."""
