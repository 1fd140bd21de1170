"""The back office: a process of its own that logs on to the gateway's drop
copy, keeps every trade in a ledger database (DuckDB embedded, PostgreSQL for
a shared back office), reconciles what clients were told, what the house
booked at its LPs and what the LPs say they did, and exports each trading
day with its value dates.  It talks to the gateway over FIX and HTTP only."""
