"""What ships with the daemon but is not the daemon: ``fixgw lp-sim`` (a
simulated LP behind a FIX acceptor) and the load generator of ``fixgw
bench``.  Nothing of the daemon imports it."""
