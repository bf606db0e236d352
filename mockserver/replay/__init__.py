"""Fixture record and replay: cassettes of real traffic, streams kept line by line with their timing.

`cassette` is the file format (the one codec), `redaction` keeps secrets out of it, `recorder`
is the recording reverse proxy, `matcher` and `replayer` serve a cassette back, `convert`
turns one into reply scripts and seed data, and `check` lists lines a real Waldur could not send.
"""
