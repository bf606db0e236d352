"""Stage 2 of the stream pipeline: protocol adapters, upstream events in, wire items out.

One module per wire protocol; each also carries the `Encoder` of its items.
"""
