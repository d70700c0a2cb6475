"""The connector layer: everything that talks to a service over the network.

    services/http.py         one HTTP client: timeouts, retries with backoff and jitter, rate-limit
                             waits, token fetch and refresh, secrets kept out of every message
    services/jobs.py         one job runner: at most N jobs active, polled to their end
    services/settings.py     checks for URLs, IDs, secrets and tokens, as the command line is read
    services/auth0/          Auth0's Management API: tenant settings and client, the export job,
                             the import format, schema and run
    services/marketo/        Marketo: the client and the bulk lead import (batches, result files)
    services/salesforce/     Salesforce: the client and Bulk API 2.0 ingest jobs (results joined)

Nothing here imports an op, a command or the pipeline: a service module takes bytes, records
and callbacks, and returns results; the commands wire it to the stream. This package's
__init__ imports nothing, so that a module without network needs (the import schema) can be
imported without paying for httpx.
"""
