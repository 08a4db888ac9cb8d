"""HubSpot as a lead source: its API (api.py) and polling for changed records (poll.py)."""
