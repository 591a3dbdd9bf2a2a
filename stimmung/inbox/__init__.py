"""The case inbox (`stimmung inbox`): a server-rendered web app where teams work their case queues.

Cases stay where the case manager keeps them (the cases index in Elasticsearch): the inbox reads
and changes those documents with optimistic concurrency and keeps no state of its own besides
signed session cookies and its audit index.

- ``accounts``: users, teams, rights; Argon2id password checks; OIDC claims -> rights
- ``actions``: the case transitions (claim, note, reply, close, reopen, assign, move) — pure
- ``store``: queue queries, versioned reads and writes, lead statistics, audit log
- ``present``: SLA clock, CSV export, SVG charts — pure
- ``app``: the Starlette app (routes, sessions, CSRF, live updates); ``oidc``: sign-in via OIDC
"""
