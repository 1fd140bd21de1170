"""The order flow: client orders from FIX to the matcher, children to the LP
adapters, fills back to the ledger and to the client.

``mapping`` decodes a FIX message into a domain command once and encodes
the results; ``entry`` takes a client's requests; ``routing`` sends child
orders to LPs and takes every LP event (a fill is booked there);
``publish`` tells clients what happened; ``journal`` (with
``journal_entries``) keeps what a restart must find again, ``recovery`` and
``restore`` take it back; ``market_data`` serves the aggregated book;
``rules`` is the routing and risk configuration in force; ``stats`` counts.
"""
