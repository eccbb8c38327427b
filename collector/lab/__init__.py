"""The simulated fleet on loopback (real WS-Management + PSRP) used by the demo and the tests."""
