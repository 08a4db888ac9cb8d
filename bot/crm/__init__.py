"""Leads from the CRM: the `sources.yml` mapping, record mapping and the HubSpot webhook.

The HubSpot API client (owners, search polling) lives beside these modules;
everything here works on records already in hand.
"""
