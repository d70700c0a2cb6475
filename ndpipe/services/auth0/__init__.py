"""Auth0's Management API: everything ndpipe does with a tenant, below the commands.

    tenant.py         the tenant's settings (domain, credentials) checked, and the client made
    client.py         the Management API client: token, connections, jobs, downloads (httpx)
    export.py         an export job: started, followed with its progress, its file streamed
    import_format.py  the users files an import job takes, and its failure reports' shape
    importer.py       a bulk import run: chunks sent as jobs (ndpipe.services.jobs), counted
    schema.py         the import schema every user is checked against before it is sent

Only client.py imports httpx, and the others import it only when a client is made or a run
starts; this __init__ imports nothing, so a command that only reads files (or checks users
against the schema) starts without paying for it.
"""
