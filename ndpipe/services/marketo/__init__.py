"""Marketo: the REST client (token, errors, bulk endpoints) and bulk lead import runs.

client.py   MarketoClient: endpoint and hosts, token, how Marketo's answers are read,
            create a batch, read its status and its failures and warnings files
bulk.py     LeadImport: files sent as batches, at most two at a time, polled to their end
"""
