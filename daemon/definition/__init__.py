"""The call center as the YAML describes it: load, validate, render, trace."""
