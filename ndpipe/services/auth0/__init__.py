"""Auth0 support: the Management API client lives in ndpipe.services.auth0.client.

This package's __init__ imports nothing, so that a module here that does not talk to Auth0
(an import-schema checker, say) can be imported without paying for httpx; only
`ndpipe.services.auth0.client` imports httpx, and only the Auth0 commands import that.
"""
