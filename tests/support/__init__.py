"""Shared test support: the stack, the clients, the simulator and the IPSec harness."""
