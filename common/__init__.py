"""Thin shared pieces of the BRC scripts: BroNet, categorical projection, envs, suites."""
