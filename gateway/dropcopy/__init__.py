"""The drop copy: what the gateway told its clients and booked at its LPs,
copied to counterparties that keep the record (a back office), by a process
of its own that follows the order journal.

``copies`` formats the copies, ``follow`` reads the journal and records
them on the drop-copy sessions, ``service`` is that process, and
``process`` is how the gateway starts, watches and stops it.
"""
