"""pytest plugin (entry point `pytest11`): the `costguard_sim` fixture."""
