"""Salesforce's Bulk API 2.0 ingest jobs (CRM.md §2).

client.py   SalesforceClient: the session (client credentials or a ready token), create,
            upload, close, abort and read ingest jobs, download their result files
ingest.py   Ingest: upload files as jobs, one at a time, never left Open, every row
            accounted for (succeeded, failed, unprocessed or missing)
"""
