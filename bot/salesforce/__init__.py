"""Salesforce as a lead source: its REST API (api.py), polling for changed Leads
(poll.py), the decision's write-back (writeback.py), `handoff salesforce check`
(check.py) and the link to a record (links.py)."""
